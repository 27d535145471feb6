package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// decoder copies a generic JSON value (maps, slices, json.Number, strings,
// bools, nil) into a typed value, guided by the json tags of the target's
// struct fields. Unlike encoding/json it matches field names exactly, keeps
// going after a problem and records every unknown field and every wrongly
// typed value with its path. What cannot be decoded is left at its zero
// value, so the result is a best effort.
type decoder struct {
	errs FieldErrors
	// sections are the names spec.<name> may have beyond ClusterSpec's
	// fields: provider sections, kept as generic objects in Extra.
	sections []string
}

// genericDecoder is a type that reads itself from a generic JSON value, for
// union types such as Addon.
type genericDecoder interface {
	decodeGeneric(d *decoder, path string, in any)
}

func (d *decoder) fail(path, msg string) {
	d.errs = append(d.errs, FieldError{Field: path, Message: msg})
}

func reflectValueOf(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }

// decodeValue stores in into out, which must be settable. A nil in (JSON
// null, or an empty YAML value) leaves out untouched, like an absent field.
func (d *decoder) decodeValue(path string, in any, out reflect.Value) {
	if in == nil {
		return
	}
	if out.CanAddr() {
		if gd, ok := out.Addr().Interface().(genericDecoder); ok {
			gd.decodeGeneric(d, path, in)
			return
		}
	}
	switch out.Kind() {
	case reflect.Pointer:
		v := reflect.New(out.Type().Elem())
		d.decodeValue(path, in, v.Elem())
		out.Set(v)
	case reflect.Struct:
		d.decodeStruct(path, in, out)
	case reflect.Map:
		d.decodeMap(path, in, out)
	case reflect.Slice:
		d.decodeSlice(path, in, out)
	case reflect.Interface:
		out.Set(reflect.ValueOf(in))
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			d.fail(path, "must be a string"+describe(in))
			return
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := in.(bool)
		if !ok {
			d.fail(path, "must be a boolean (true or false)"+describe(in))
			return
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := in.(json.Number)
		if !ok {
			d.fail(path, "must be an integer"+describe(in))
			return
		}
		i, err := strconv.ParseInt(string(n), 10, out.Type().Bits())
		if errors.Is(err, strconv.ErrRange) {
			d.fail(path, fmt.Sprintf("must be an integer between %d and %d", minInt(out.Type().Bits()), maxInt(out.Type().Bits())))
			return
		}
		if err != nil {
			d.fail(path, "must be an integer"+describe(in))
			return
		}
		out.SetInt(i)
	case reflect.Float32, reflect.Float64:
		n, ok := in.(json.Number)
		if !ok {
			d.fail(path, "must be a number"+describe(in))
			return
		}
		f, err := strconv.ParseFloat(string(n), out.Type().Bits())
		if err != nil {
			d.fail(path, "must be a number"+describe(in))
			return
		}
		out.SetFloat(f)
	default:
		// Only reachable if a field of an unsupported kind is added to the spec types.
		d.fail(path, fmt.Sprintf("cannot decode into %s", out.Type()))
	}
}

func (d *decoder) decodeStruct(path string, in any, out reflect.Value) {
	m, ok := in.(map[string]any)
	if !ok {
		d.fail(path, "must be an object"+describe(in))
		return
	}
	fields := jsonFields(out.Type())
	for _, key := range sortedKeys(m) {
		i, ok := fields[key]
		if !ok && out.Type() == clusterSpecType && slices.Contains(d.sections, key) {
			d.decodeSection(joinKey(path, key), key, m[key], out.Addr().Interface().(*ClusterSpec))
			continue
		}
		if !ok {
			d.fail(joinKey(path, key), "unknown field")
			continue
		}
		d.decodeValue(joinKey(path, key), m[key], out.Field(i))
	}
}

var clusterSpecType = reflect.TypeFor[ClusterSpec]()

// decodeSection stores a provider section named by the caller (not one of
// ClusterSpec's fields) in s.Extra. It must be an object; its content is
// free-form here and checked by Validate.
func (d *decoder) decodeSection(path, name string, in any, s *ClusterSpec) {
	if in == nil {
		return // like an absent field
	}
	m, ok := in.(map[string]any)
	if !ok {
		d.fail(path, "must be an object"+describe(in))
		return
	}
	if s.Extra == nil {
		s.Extra = map[string]map[string]any{}
	}
	s.Extra[name] = m
}

func (d *decoder) decodeMap(path string, in any, out reflect.Value) {
	m, ok := in.(map[string]any)
	if !ok {
		d.fail(path, "must be an object"+describe(in))
		return
	}
	if out.Type().Key().Kind() != reflect.String {
		d.fail(path, fmt.Sprintf("cannot decode into %s", out.Type()))
		return
	}
	if len(m) == 0 {
		return // an empty map decodes to nil, as it encodes (omitempty)
	}
	result := reflect.MakeMapWithSize(out.Type(), len(m))
	elemType := out.Type().Elem()
	for _, key := range sortedKeys(m) {
		elem := reflect.New(elemType).Elem()
		d.decodeValue(joinKey(path, key), m[key], elem)
		result.SetMapIndex(reflect.ValueOf(key).Convert(out.Type().Key()), elem)
	}
	out.Set(result)
}

func (d *decoder) decodeSlice(path string, in any, out reflect.Value) {
	items, ok := in.([]any)
	if !ok {
		d.fail(path, "must be a list"+describe(in))
		return
	}
	if len(items) == 0 {
		return // an empty list decodes to nil, as it encodes (omitempty)
	}
	result := reflect.MakeSlice(out.Type(), len(items), len(items))
	for i, item := range items {
		d.decodeValue(fmt.Sprintf("%s[%d]", path, i), item, result.Index(i))
	}
	out.Set(result)
}

// fieldCache maps a struct type to its fields' JSON names and indexes.
var fieldCache sync.Map // reflect.Type -> map[string]int

func jsonFields(t reflect.Type) map[string]int {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]int)
	}
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = sf.Name
		}
		fields[name] = i
	}
	f, _ := fieldCache.LoadOrStore(t, fields)
	return f.(map[string]int)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinKey appends an object key to a path: spec.hcloud for plain keys,
// spec.hcloud.workers["a.b"] for keys a dotted path would garble.
func joinKey(path, key string) string {
	if !plainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe says what a wrongly typed value was, for error messages.
func describe(in any) string {
	switch v := in.(type) {
	case map[string]any:
		return ", got an object"
	case []any:
		return ", got a list"
	case string:
		return ", got a string"
	case bool:
		return fmt.Sprintf(", got boolean %t", v)
	case json.Number:
		if len(v) > 20 {
			return ", got a number"
		}
		return ", got number " + string(v)
	default:
		return ""
	}
}

func minInt(bits int) int64 { return math.MinInt64 >> (64 - bits) }
func maxInt(bits int) int64 { return math.MaxInt64 >> (64 - bits) }
