package dns

import (
	"encoding/binary"

	mdns "github.com/miekg/dns"
)

// optRR is the OPT record appended to fast answers for EDNS0 clients:
// root owner, type 41, UDP size 1232, no extended rcode, flags or options.
var optRR = [...]byte{0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0}

// answerFast answers the common query — one IN question for a name the
// index has, of a packable type, with at most an OPT record — without
// building a dns.Msg. It appends the response to out. ok is false when the
// query needs the general path; that path gives the same answer, only
// slower, so false is always safe.
func (s *Server) answerFast(ix *Index, q []byte, out []byte) (resp []byte, qtype uint16, ok bool) {
	if len(q) < 17 || q[2]&0xf8 != 0 { // QR=0, opcode QUERY
		return nil, 0, false
	}
	if binary.BigEndian.Uint16(q[4:]) != 1 || binary.BigEndian.Uint16(q[6:]) != 0 || binary.BigEndian.Uint16(q[8:]) != 0 {
		return nil, 0, false
	}
	arcount := binary.BigEndian.Uint16(q[10:])
	if arcount > 1 {
		return nil, 0, false
	}
	// The name in presentation form; anything that would need
	// escaping (or is a pointer) goes the general way.
	var name [256]byte
	nl, off := 0, 12
	for {
		if off >= len(q) {
			return nil, 0, false
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(q) || nl+l+1 > 254 {
			return nil, 0, false
		}
		for _, c := range q[off : off+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				// Upper case too: packed answers compress owner names
				// against the question, so a mixed-case question would get
				// mixed-case owners where the general path gives lowercase.
				return nil, 0, false
			}
			name[nl] = c
			nl++
		}
		name[nl] = '.'
		nl++
		off += l
	}
	if nl == 0 || off+4 > len(q) {
		return nil, 0, false
	}
	qtype = binary.BigEndian.Uint16(q[off:])
	if binary.BigEndian.Uint16(q[off+2:]) != mdns.ClassINET {
		return nil, 0, false
	}
	qend := off + 4
	limit, edns := mdns.MinMsgSize, false
	if arcount == 1 {
		p := qend
		if p+11 > len(q) || q[p] != 0 || binary.BigEndian.Uint16(q[p+1:]) != mdns.TypeOPT || q[p+6] != 0 {
			return nil, 0, false // not a version 0 OPT
		}
		if p+11+int(binary.BigEndian.Uint16(q[p+9:])) != len(q) {
			return nil, 0, false
		}
		limit, edns = max(mdns.MinMsgSize, min(int(binary.BigEndian.Uint16(q[p+3:])), 1232)), true
	} else if qend != len(q) {
		return nil, 0, false
	}
	slot := packSlot(qtype)
	if slot < 0 {
		return nil, 0, false
	}
	n := ix.names[string(name[:nl])] // no allocation: the compiler spots the lookup
	if n == nil {
		return nil, 0, false
	}
	pp := n.packed[slot].Load()
	if pp == nil {
		pp = ix.pack(string(name[:nl]), qtype)
		if pp == nil {
			return nil, 0, false
		}
		n.packed[slot].Store(pp)
	}
	packed := *pp
	if len(packed) < qend { // same question length by construction; guard the copy anyway
		return nil, 0, false
	}
	size := len(packed)
	if edns {
		size += len(optRR)
	}
	if size > limit {
		return nil, 0, false // needs truncation
	}
	out = append(out, packed...)
	out[0], out[1] = q[0], q[1]
	out[2] |= q[2] & 0x01 // RD
	out[3] |= q[3] & 0x10 // CD
	copy(out[12:qend], q[12:qend])
	if edns {
		binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
		out = append(out, optRR[:]...)
	}
	return out, qtype, true
}

// pack renders the answer for (name, qtype) to wire format with ID 0 and
// RD clear, or returns nil when the answer depends on more than the index
// (an ExternalName chased upstream) or the name is not ours.
func (ix *Index) pack(name string, qtype uint16) *[]byte {
	r := ix.Lookup(name, qtype)
	if !r.Ours || r.Chase != "" {
		return nil
	}
	m := new(mdns.Msg)
	m.Response, m.Authoritative, m.RecursionAvailable = true, true, true
	m.Rcode = r.Rcode
	m.Question = []mdns.Question{{Name: name, Qtype: qtype, Qclass: mdns.ClassINET}}
	m.Answer, m.Ns, m.Extra = r.Answer, r.Ns, r.Extra
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return &b
}
