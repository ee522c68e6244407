package discovery

import (
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEndpointSlice(t *testing.T) {
	r := Resources()[0]
	port := int32(80)
	slice := func() *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-abc"}, AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"10.0.0.2"}}},
			Ports:     []discoveryv1.EndpointPort{{Port: &port}}}
		r.Default(s)
		return s
	}
	s := slice()
	if *s.Ports[0].Name != "" || *s.Ports[0].Protocol != "TCP" {
		t.Fatalf("defaults: %+v", s.Ports[0])
	}
	cases := []struct {
		name   string
		mutate func(*discoveryv1.EndpointSlice)
		want   string
	}{
		{"valid", func(*discoveryv1.EndpointSlice) {}, ""},
		{"no type", func(s *discoveryv1.EndpointSlice) { s.AddressType = "" }, "FieldValueRequired addressType"},
		{"ipv6 in ipv4", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses[0] = "fd00::1" }, "FieldValueInvalid endpoints[0].addresses[0]"},
		{"no addresses", func(s *discoveryv1.EndpointSlice) { s.Endpoints[1].Addresses = nil }, "FieldValueRequired endpoints[1].addresses"},
		{"dup port", func(s *discoveryv1.EndpointSlice) { s.Ports = append(s.Ports, s.Ports[0]) }, "FieldValueDuplicate ports[1].name"},
	}
	for _, c := range cases {
		x := slice()
		c.mutate(x)
		errs := r.Validate(x)
		if c.want == "" && len(errs) != 0 || c.want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != c.want) {
			t.Errorf("%s: errs %v, want %q", c.name, errs, c.want)
		}
	}
	upd := slice()
	upd.AddressType = discoveryv1.AddressTypeIPv6
	if errs := r.ValidateUpdate(upd, s); len(errs) != 1 || errs[0].Field != "addressType" {
		t.Errorf("addressType change: %v", errs)
	}
	row := r.TableRow(s)
	want := []interface{}{"web-abc", "IPv4", "80", "10.0.0.1,10.0.0.2", "<unknown>"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d = %#v, want %#v", i, row[i], want[i])
		}
	}
}
