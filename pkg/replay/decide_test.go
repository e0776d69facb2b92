package replay

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/rules"
)

// dirty sets every field of v (a struct, through pointers too) to a value
// that is not its zero: a string "dirty", numbers 7, true, a time, an
// address, a rule.
func dirty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		switch v.Type() {
		case reflect.TypeOf(time.Time{}):
			v.Set(reflect.ValueOf(time.Unix(7, 7)))
			return
		case reflect.TypeOf(netip.Addr{}):
			v.Set(reflect.ValueOf(netip.MustParseAddr("203.0.113.7")))
			return
		}
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				dirty(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("dirty")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Pointer:
		if v.Type() == reflect.TypeOf(&rules.Rule{}) {
			v.Set(reflect.ValueOf(&rules.Rule{Label: "dirty"}))
		}
	}
}

// TestDecideLeavesNothing: decide sets the reused record field by field;
// a record left dirty by anything before (every field set) gives the same
// records as a clean one, in every mode, on captures of every kind
// (fragments held and released included).
func TestDecideLeavesNothing(t *testing.T) {
	if reflect.ValueOf(Record{}).NumField() != 24 {
		// A new field must be set by decide: add it there, then here.
		t.Fatalf("Record has %d fields, decide knows 24", reflect.ValueOf(Record{}).NumField())
	}
	rs, err := rules.ParseFile(filepath.Join("..", "..", "rules", "webserver.rules"))
	if err != nil {
		t.Fatal(err)
	}
	caps, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "*.pcap"))
	more, _ := filepath.Glob(filepath.Join("..", "..", "..", "shared", "pcaps", "*frag*.pcap"))
	caps = append(caps, more...)
	for _, mode := range []Mode{Compare, Stateless, Stateful} {
		for _, name := range caps {
			var clean, dirtied []Record
			for _, d := range []bool{false, true} {
				rp, err := New(Config{Rules: rs, Mode: mode})
				if err != nil {
					t.Fatal(err)
				}
				out := &clean
				if d {
					out = &dirtied
					dirty(reflect.ValueOf(&rp.rec).Elem())
				}
				rp.ReplayFile(name, func(r *Record) error {
					*out = append(*out, *r)
					if d {
						dirty(reflect.ValueOf(&rp.rec).Elem())
					}
					return nil
				})
			}
			if !reflect.DeepEqual(clean, dirtied) {
				for i := range min(len(clean), len(dirtied)) {
					if !reflect.DeepEqual(clean[i], dirtied[i]) {
						t.Fatalf("%v %s record %d:\n%+v after a clean record\n%+v after a dirty one", mode, name, i, clean[i], dirtied[i])
					}
				}
				t.Fatalf("%v %s: %d records after clean ones, %d after dirty ones", mode, name, len(clean), len(dirtied))
			}
		}
	}
}
