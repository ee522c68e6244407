package apiserver

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// plainBindingJSON decodes the JSON body of a pods/binding request when
// it has the plain shape schedulers send: one object with "kind":
// "Binding" and "apiVersion": "v1" (both present), "metadata" holding
// only name, namespace, uid (and a null creationTimestamp), "target"
// holding only kind and name, every value a string of printable ASCII
// without escapes, no key twice. It reports false for anything else,
// which the JSON serializer then decodes. For the bodies it accepts, the
// result is the serializer's (TestPlainBindingJSONMatchesSerializer),
// without its two passes over the body (one to find the kind, one by
// reflection into the Binding): the serializer's decode was a third of a
// binding's handler CPU.
func plainBindingJSON(body []byte) (*corev1.Binding, bool) {
	d := bindingLexer{b: body}
	b := &corev1.Binding{}
	var top, meta, target uint8 // the keys seen, one bit each
	ok := d.object(func(key []byte) bool {
		switch string(key) {
		case "kind":
			return once(&top, 1) && d.str(&b.Kind) && b.Kind == "Binding"
		case "apiVersion":
			return once(&top, 2) && d.str(&b.APIVersion) && b.APIVersion == "v1"
		case "metadata":
			return once(&top, 4) && d.object(func(key []byte) bool {
				switch string(key) {
				case "name":
					return once(&meta, 1) && d.str(&b.Name)
				case "namespace":
					return once(&meta, 2) && d.str(&b.Namespace)
				case "uid":
					var uid string
					if !once(&meta, 4) || !d.str(&uid) {
						return false
					}
					b.UID = types.UID(uid)
					return true
				case "creationTimestamp":
					return once(&meta, 8) && d.null()
				}
				return false
			})
		case "target":
			return once(&top, 8) && d.object(func(key []byte) bool {
				switch string(key) {
				case "kind":
					return once(&target, 1) && d.str(&b.Target.Kind)
				case "name":
					return once(&target, 2) && d.str(&b.Target.Name)
				}
				return false
			})
		}
		return false
	})
	if !ok || top&3 != 3 {
		return nil, false
	}
	d.space()
	if d.i != len(d.b) {
		return nil, false
	}
	return b, true
}

// once sets bit in seen, failing when it was set: a repeated key is left
// to the serializer.
func once(seen *uint8, bit uint8) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// bindingLexer reads the small JSON subset plainBindingJSON accepts.
type bindingLexer struct {
	b []byte
	i int
}

func (d *bindingLexer) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *bindingLexer) byte(c byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes into v.
func (d *bindingLexer) str(v *string) bool {
	raw, ok := d.raw()
	if ok {
		*v = string(raw)
	}
	return ok
}

// raw reads a string of printable ASCII without escapes and returns its
// bytes (in the body).
func (d *bindingLexer) raw() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		d.i++
	}
	return nil, false
}

func (d *bindingLexer) null() bool {
	d.space()
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// object reads an object, calling member for each key with the lexer at
// its value; member reads the value and reports whether it is accepted.
func (d *bindingLexer) object(member func(key []byte) bool) bool {
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return true
	}
	for {
		key, ok := d.raw()
		if !ok || !d.byte(':') || !member(key) {
			return false
		}
		if d.byte(',') {
			continue
		}
		return d.byte('}')
	}
}
