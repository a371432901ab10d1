package stripesandbox

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Request parameters as Stripe's API takes them (form encoded, with
// bracketed keys) and list pagination.

// Form decoding, for the bracketed keys stripe-go's form encoder writes:
// metadata[k]=v, line_items[0][price]=…, expand[0]=… (or expand[]=…).

// formMap collects name[k]=v for keys k without further brackets.
func formMap(f url.Values, name string) (map[string]string, bool) {
	out := map[string]string{}
	present := f.Has(name) // "metadata=" clears all keys
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok || !strings.HasSuffix(rest, "]") || strings.ContainsAny(rest[:len(rest)-1], "[]") {
			continue
		}
		out[rest[:len(rest)-1]] = vs[len(vs)-1]
		present = true
	}
	return out, present
}

// formList collects name, name[] and name[i] values, in index order.
func formList(f url.Values, name string) []string {
	var out []string
	out = append(out, f[name]...)
	out = append(out, f[name+"[]"]...)
	type iv struct {
		i int
		v []string
	}
	var idx []iv
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok || !strings.HasSuffix(rest, "]") {
			continue
		}
		if i, err := strconv.Atoi(rest[:len(rest)-1]); err == nil {
			idx = append(idx, iv{i, vs})
		}
	}
	slices.SortFunc(idx, func(a, b iv) int { return a.i - b.i })
	for _, x := range idx {
		out = append(out, x.v...)
	}
	return out
}

// formItems collects name[i][field]=v into one map per index, in index
// order, with each map's index.
func formItems(f url.Values, name string) ([]int, []map[string]string) {
	byIdx := map[int]map[string]string{}
	for k, vs := range f {
		rest, ok := strings.CutPrefix(k, name+"[")
		if !ok {
			continue
		}
		// field is "price", or "price_data][currency" for nested keys.
		istr, field, ok := strings.Cut(rest, "][")
		i, err := strconv.Atoi(istr)
		if !ok || err != nil || i < 0 || !strings.HasSuffix(field, "]") {
			continue
		}
		if byIdx[i] == nil {
			byIdx[i] = map[string]string{}
		}
		byIdx[i][field[:len(field)-1]] = vs[len(vs)-1]
	}
	keys := slices.Sorted(maps.Keys(byIdx))
	out := make([]map[string]string, len(keys))
	for j, k := range keys {
		out[j] = byIdx[k]
	}
	return keys, out
}

func formInt(f url.Values, key string) (int64, bool, *apiError) {
	if !f.Has(key) {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(f.Get(key), 10, 64)
	if err != nil {
		return 0, true, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
			Code: "parameter_invalid_integer", Param: key, Message: "Invalid integer: " + f.Get(key)}
	}
	return n, true, nil
}

func formBool(f url.Values, key string) (bool, bool, *apiError) {
	if !f.Has(key) {
		return false, false, nil
	}
	switch f.Get(key) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, true, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error",
		Code: "parameter_invalid_boolean", Param: key, Message: "Invalid boolean: " + f.Get(key)}
}

func expandOf(r *http.Request) expand { return formList(r.Form, "expand") }

// checkURL validates a URL parameter as Stripe does: absolute http(s).
func checkURL(param, raw string) *apiError {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errInvalid(param, "Not a valid URL")
	}
	return nil
}

// paginate pages through all, which is sorted by key, descending (newest
// first), with limit (default 10, 1 to 100), starting_after and
// ending_before. lookup gives the key of the object a cursor names.
func paginate[T any](f url.Values, all []T, key func(T) int64, lookup func(id string) (int64, bool), what string) ([]T, bool, *apiError) {
	limit, has, e := formInt(f, "limit")
	if e != nil {
		return nil, false, e
	}
	if !has {
		limit = 10
	}
	if limit < 1 || limit > 100 {
		return nil, false, errInvalid("limit", "This value must be greater than or equal to 1 and less than or equal to 100.")
	}
	if id := f.Get("starting_after"); id != "" {
		k, ok := lookup(id)
		if !ok {
			return nil, false, errNoSuch(what, id, "starting_after")
		}
		i := 0
		for i < len(all) && key(all[i]) >= k {
			i++
		}
		all = all[i:]
	} else if id := f.Get("ending_before"); id != "" {
		k, ok := lookup(id)
		if !ok {
			return nil, false, errNoSuch(what, id, "ending_before")
		}
		i := 0
		for i < len(all) && key(all[i]) > k {
			i++
		}
		before := all[:i]
		if int64(len(before)) > limit {
			return before[int64(len(before))-limit:], true, nil
		}
		return before, false, nil
	}
	if int64(len(all)) > limit {
		return all[:limit], true, nil
	}
	return all, false, nil
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

func listOf[T any](data []T, hasMore bool, url string) listJSON {
	if data == nil {
		data = []T{}
	}
	return listJSON{Object: "list", Data: data, HasMore: hasMore, URL: url}
}

// updateMetadata applies a metadata update as Stripe does: an empty value
// deletes its key, an empty map clears everything. The old metadata goes
// into prev (the event's previous_attributes) when anything changed.
func updateMetadata(cur, md map[string]string, prev map[string]any) map[string]string {
	old := metadataJSON(cur)
	next := metadataJSON(cur)
	if len(md) == 0 {
		next = map[string]string{}
	}
	for k, v := range md {
		if v == "" {
			delete(next, k)
		} else {
			next[k] = v
		}
	}
	if maps.Equal(old, next) {
		return cur
	}
	prev["metadata"] = old
	return next
}
