package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink writes incremental transactions straight to the kernel over
// netlink (github.com/google/nftables) instead of running nft. An endpoint
// change then costs the kernel's commit alone: no nft process to start, no
// parsing, and no fetch of the table's chains and sets into nft's cache,
// which at 10k services cost more CPU than the commit itself
// (bench/proxy/RESULTS.md).
//
// Only the rule forms Rules renders for ordinary services are compiled
// (see compileRule); a transaction with anything else (affinity sets,
// anonymous sets) returns errUnsupported and the applier runs it through
// nft as before. The table itself is always created by a full sync
// through nft.
type Netlink struct {
	table *gnft.Table
	netns int // fd of the network namespace; 0 for the caller's thread's
}

// NewNetlink returns a writer for table (family ip) in the network
// namespace open as netnsFd (0: the namespace of the thread that flushes).
func NewNetlink(table string, netnsFd int) *Netlink {
	return &Netlink{table: &gnft.Table{Name: table, Family: gnft.TableFamilyIPv4}, netns: netnsFd}
}

// errUnsupported marks a transaction the netlink writer cannot express.
var errUnsupported = errors.New("not expressible over netlink")

// maxNetlinkOps bounds a netlink transaction. The batch goes to the kernel
// in one sendmsg, which the socket's send buffer limits (thousands of
// operations failed with EMSGSIZE); bigger transactions, such as the
// catch-up after the informers' initial listing, go through nft, whose
// per-run cost is small next to them.
const maxNetlinkOps = 256

// nlWriter collects one transaction's netlink messages.
type nlWriter struct {
	nl   *Netlink
	conn *gnft.Conn
	n    int
	err  error
}

// socketBuffer is the send and receive buffer of the netlink socket: a
// batch goes out in one sendmsg, and the kernel answers every message with
// an acknowledgement of its own (a small packet each, but counted at its
// full buffer size): the default 208 KiB is tight for maxNetlinkOps.
const socketBuffer = 4 << 20

func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		// The FORCE variants pass net.core.[rw]mem_max (we run as root).
		serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer))
	}); err != nil {
		return err
	}
	if serr != nil {
		// Not privileged enough: what the limits allow (batches stay
		// under maxNetlinkOps, which fits the defaults).
		_ = c.SetWriteBuffer(socketBuffer)
		_ = c.SetReadBuffer(socketBuffer)
	}
	return nil
}

func (n *Netlink) newWriter() (*nlWriter, error) {
	opts := []gnft.ConnOption{gnft.WithSockOptions(bigBuffers)}
	if n.netns != 0 {
		opts = append(opts, gnft.WithNetNSFd(n.netns))
	}
	c, err := gnft.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return &nlWriter{nl: n, conn: c}, nil
}

// next counts one more operation, failing the transaction once it is too
// large for one netlink batch.
func (w *nlWriter) next() {
	if w.n++; w.n > maxNetlinkOps {
		w.fail(fmt.Errorf("more than %d operations: %w", maxNetlinkOps, errUnsupported))
	}
}

func (w *nlWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *nlWriter) chain(name string) *gnft.Chain {
	return &gnft.Chain{Table: w.nl.table, Name: name}
}

func (w *nlWriter) addChain(c *Chain) {
	if c.Hook != "" {
		w.fail(fmt.Errorf("base chain %s: %w", c.Name, errUnsupported))
		return
	}
	w.conn.AddChain(w.chain(c.Name))
	w.next()
}

func (w *nlWriter) flushChain(name string) { w.conn.FlushChain(w.chain(name)); w.next() }

func (w *nlWriter) deleteChain(name string) { w.conn.DelChain(w.chain(name)); w.next() }

func (w *nlWriter) addRule(chain, rule string) {
	exprs, err := compileRule(rule)
	if err != nil {
		w.fail(fmt.Errorf("rule %q: %w", rule, err))
		return
	}
	w.conn.AddRule(&gnft.Rule{Table: w.nl.table, Chain: w.chain(chain), Exprs: exprs})
	w.next()
}

func (w *nlWriter) addSet(s *Set) { w.fail(fmt.Errorf("set %s: %w", s.Name, errUnsupported)) }

func (w *nlWriter) deleteSet(s *Set) { w.fail(fmt.Errorf("set %s: %w", s.Name, errUnsupported)) }

func (w *nlWriter) element(set string, key, value []string, del bool) {
	k, err := encodeKey(key)
	if err != nil {
		w.fail(fmt.Errorf("element %v of %s: %w", key, set, err))
		return
	}
	el := gnft.SetElement{Key: k}
	if value != nil {
		v, err := compileVerdict(value)
		if err != nil {
			w.fail(fmt.Errorf("element %v of %s: %w", key, set, err))
			return
		}
		el.VerdictData = v
	}
	s := &gnft.Set{Table: w.nl.table, Name: set, IsMap: value != nil}
	if del {
		err = w.conn.SetDeleteElements(s, []gnft.SetElement{el})
	} else {
		err = w.conn.SetAddElements(s, []gnft.SetElement{el})
	}
	if err != nil {
		w.fail(fmt.Errorf("element %v of %s: %w", key, set, err))
		return
	}
	w.next()
}

func (w *nlWriter) addElement(e *Element)         { w.element(e.Map, e.Key, e.Value, false) }
func (w *nlWriter) deleteElement(e *Element)      { w.element(e.Map, e.Key, nil, true) }
func (w *nlWriter) addShared(e *SharedElement)    { w.element(e.Set, e.Key, nil, false) }
func (w *nlWriter) deleteShared(e *SharedElement) { w.element(e.Set, e.Key, nil, true) }

// flush sends the transaction as one netlink batch (atomic in the kernel).
func (w *nlWriter) flush() error {
	if w.err != nil {
		return w.err
	}
	return w.conn.Flush()
}

// encodeKey packs a (possibly concatenated) set key the way nft does:
// each field in network byte order, padded to a 4-byte register.
func encodeKey(fields []string) ([]byte, error) {
	var out []byte
	for _, f := range fields {
		var b []byte
		if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
			v := a.As4()
			b = v[:]
		} else if p, ok := protocols[f]; ok {
			b = []byte{p}
		} else if n, err := strconv.ParseUint(f, 10, 16); err == nil {
			b = binaryutil.BigEndian.PutUint16(uint16(n))
		} else {
			return nil, fmt.Errorf("key field %q: %w", f, errUnsupported)
		}
		out = append(out, b...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out, nil
}

var protocols = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

func compileVerdict(v []string) (*expr.Verdict, error) {
	switch {
	case len(v) == 1 && v[0] == "drop":
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	case len(v) == 1 && v[0] == "accept":
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	case len(v) == 1 && v[0] == "return":
		return &expr.Verdict{Kind: expr.VerdictReturn}, nil
	case len(v) == 1 && strings.HasPrefix(v[0], "goto "):
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: strings.TrimPrefix(v[0], "goto ")}, nil
	case len(v) == 1 && strings.HasPrefix(v[0], "jump "):
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: strings.TrimPrefix(v[0], "jump ")}, nil
	}
	return nil, fmt.Errorf("verdict %q: %w", strings.Join(v, " "), errUnsupported)
}

// compileRule turns a rule in the subset of nft syntax the proxy renders
// for services into the expressions nft itself would generate for it
// (TestNetlinkMatchesNFT lists both and compares). Matches:
//
//	ip daddr|saddr [!=] ADDR[/LEN]
//	tcp|udp|sctp dport PORT
//	meta l4proto tcp|udp|sctp
//	numgen random mod N V
//	fib saddr|daddr type local
//
// then one statement: jump C, goto C, drop, accept, return, or
// dnat to ADDR:PORT. Anything else is errUnsupported.
func compileRule(rule string) ([]expr.Any, error) {
	t := strings.Fields(rule)
	var out []expr.Any
	unsupported := func(at int) ([]expr.Any, error) {
		return nil, fmt.Errorf("at %q: %w", strings.Join(t[at:], " "), errUnsupported)
	}
	cmp := func(op expr.CmpOp, data []byte) {
		out = append(out, &expr.Cmp{Op: op, Register: 1, Data: data})
	}
	l4proto := func(p byte) {
		out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1})
		cmp(expr.CmpOpEq, []byte{p})
	}
	for i := 0; i < len(t); {
		switch {
		case t[i] == "ip" && i+2 < len(t) && (t[i+1] == "daddr" || t[i+1] == "saddr"):
			off := uint32(16)
			if t[i+1] == "saddr" {
				off = 12
			}
			op, j := expr.CmpOpEq, i+2
			if t[j] == "!=" {
				op, j = expr.CmpOpNeq, j+1
			}
			if j >= len(t) {
				return unsupported(i)
			}
			pfx, err := parsePrefix(t[j])
			if err != nil {
				return unsupported(i)
			}
			addr := pfx.Addr().As4()
			bits := pfx.Bits()
			switch {
			case bits == 0:
				return unsupported(i)
			case bits%8 == 0:
				// Byte-aligned: nft loads only the prefix bytes.
				out = append(out, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(bits / 8)})
				cmp(op, addr[:bits/8])
			default:
				mask := netip.PrefixFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), bits).Masked().Addr().As4()
				out = append(out,
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask[:], Xor: []byte{0, 0, 0, 0}})
				cmp(op, addr[:])
			}
			i = j + 1
		case protocols[t[i]] != 0 && i+2 < len(t) && t[i+1] == "dport":
			port, err := strconv.ParseUint(t[i+2], 10, 16)
			if err != nil {
				return unsupported(i)
			}
			l4proto(protocols[t[i]])
			out = append(out, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
			cmp(expr.CmpOpEq, binaryutil.BigEndian.PutUint16(uint16(port)))
			i += 3
		case t[i] == "meta" && i+2 < len(t) && t[i+1] == "l4proto" && protocols[t[i+2]] != 0:
			l4proto(protocols[t[i+2]])
			i += 3
		case t[i] == "numgen" && i+4 < len(t) && t[i+1] == "random" && t[i+2] == "mod":
			mod, err1 := strconv.ParseUint(t[i+3], 10, 32)
			v, err2 := strconv.ParseUint(t[i+4], 10, 32)
			if err1 != nil || err2 != nil || mod == 0 {
				return unsupported(i)
			}
			out = append(out, &expr.Numgen{Register: 1, Modulus: uint32(mod), Type: unix.NFT_NG_RANDOM})
			cmp(expr.CmpOpEq, binaryutil.NativeEndian.PutUint32(uint32(v)))
			i += 5
		case t[i] == "fib" && i+3 < len(t) && (t[i+1] == "saddr" || t[i+1] == "daddr") && t[i+2] == "type" && t[i+3] == "local":
			out = append(out, &expr.Fib{Register: 1, FlagSADDR: t[i+1] == "saddr", FlagDADDR: t[i+1] == "daddr", ResultADDRTYPE: true})
			cmp(expr.CmpOpEq, binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL))
			i += 4
		case t[i] == "dnat" && i+2 == len(t)-1 && t[i+1] == "to":
			ap, err := netip.ParseAddrPort(t[i+2])
			if err != nil || !ap.Addr().Is4() {
				return unsupported(i)
			}
			a := ap.Addr().As4()
			out = append(out,
				&expr.Immediate{Register: 1, Data: a[:]},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ap.Port())},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
			i = len(t)
		case i == len(t)-1 || (i == len(t)-2 && (t[i] == "jump" || t[i] == "goto")):
			v, err := compileVerdict([]string{strings.Join(t[i:], " ")})
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			i = len(t)
		default:
			return unsupported(i)
		}
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() || p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad address %q", s)
	}
	return netip.PrefixFrom(a, 32), nil
}
