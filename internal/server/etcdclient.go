package server

import clientv3 "go.etcd.io/etcd/client/v3"

// EtcdClient returns the client the storage layer uses (for tests that
// compact or inspect etcd); nil before Run has started etcd.
func (s *Server) EtcdClient() *clientv3.Client { return s.cli }
