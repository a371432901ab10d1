package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/proxy"
)

// The admin listing reads the accounts' listing columns by their partial
// indexes (migrations/0001_store.sql), page by page from a cursor, never
// every subject: each sort is one index, walked from the cursor's
// position (keyset pagination). What each row shows is then made as
// bolt's is (proxy.Account.Summary under the filter's policy), from its
// account, customer and comps read for the whole batch at once
// (accountViews), and a row the policy does not match is skipped, at most
// maxScan of them a page.

const maxScan = 20_000

// position is where a row stands in a walk: what a cursor holds.
type position struct {
	Rank int    `json:"r,omitempty"`
	N    int64  `json:"n,omitempty"` // the sort's seconds
	S    string `json:"s,omitempty"` // the sort's email, or a search's key
	ID   string `json:"i"`
}

// walkSpec is one order of the listing: the columns it sorts by, last the
// row's ID, and how a row's position is read.
type walkSpec struct {
	tag  byte
	cols []string
	pos  func(p position) []any
}

var walkSpecs = map[proxy.UserSort]walkSpec{
	proxy.SortID:        {'i', []string{"a.id"}, func(p position) []any { return []any{p.ID} }},
	proxy.SortFirstSeen: {'f', []string{"a.first_s", "a.id"}, func(p position) []any { return []any{p.N, p.ID} }},
	proxy.SortLastSeen:  {'l', []string{"a.last_s", "a.id"}, func(p position) []any { return []any{p.N, p.ID} }},
	proxy.SortEmail:     {'e', []string{"a.list_email", "a.id"}, func(p position) []any { return []any{p.S, p.ID} }},
	proxy.SortStatus:    {'r', []string{"a.list_rank", "a.last_s", "a.id"}, func(p position) []any { return []any{p.Rank, p.N, p.ID} }},
}

func encodeCursor(tag byte, p position) string {
	data, _ := json.Marshal(p)
	return base64.RawURLEncoding.EncodeToString(append([]byte{tag}, data...))
}

func decodeCursor(c string, tag byte) (position, error) {
	data, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(data) < 2 || data[0] != tag {
		return position{}, proxy.ErrBadCursor
	}
	var p position
	if err := json.Unmarshal(data[1:], &p); err != nil || p.ID == "" {
		return position{}, proxy.ErrBadCursor
	}
	return p, nil
}

// rareRows is the most rows a status or plan filter may match for the
// listing to read them by the filter's GIN index and sort them, rather
// than walk the sort's index for them. The planner does not know how
// rare a status is (it guessed 5,000 rows for a status none of a million
// subjects held, and walked the whole last-seen index: 2.4 s a page);
// the listing's counters do. Either way reads no table whole.
const rareRows = 10_000

// plan is one listing query: its filter, its order and its total.
type plan struct {
	spec  walkSpec
	where []string
	args  []any
	total int64
	// rare: the filter matches few rows (rareRows): they are read by the
	// filter's index first, then ordered.
	rare bool
}

func (s *Store) planList(ctx context.Context, f *proxy.UserFilter) (plan, error) {
	if q := strings.TrimSpace(f.Query); q != "" {
		return searchPlan(q), nil
	}
	spec, ok := walkSpecs[f.Sort]
	if !ok {
		return plan{}, fmt.Errorf("unknown sort %q", f.Sort)
	}
	p := plan{where: []string{"a.listed"}}
	tag, _ := f.TotalTag() // "": none tells the total
	if f.Status != "" {
		p.args = append(p.args, f.Status)
		p.where = append(p.where, fmt.Sprintf("a.statuses @> ARRAY[$%d::text]", len(p.args)))
		if f.Sort == proxy.SortStatus {
			spec = walkSpecs[proxy.SortLastSeen] // one status: nothing to order by
			spec.tag = 'r'
		}
	}
	if f.Plan != "" {
		p.args = append(p.args, f.Plan)
		p.where = append(p.where, fmt.Sprintf("a.plans @> ARRAY[$%d::text]", len(p.args)))
	}
	p.spec, p.total = spec, -1
	if tag != "" {
		n, err := tagCount(ctx, s.pool, tag)
		if err != nil {
			return plan{}, err
		}
		p.total = n
	}
	p.rare = (f.Status != "" || f.Plan != "") && p.total >= 0 && p.total <= s.rareRows()
	return p, nil
}

// rareRows is the store's rareRows (a test sets another, to check both
// ways of reading a filter).
func (s *Store) rareRows() int64 {
	if s.listRareRows != nil {
		return *s.listRareRows
	}
	return rareRows
}

// searchPlan finds by the beginning of a customer ID, a subject ID, or an
// email (lower case), as bolt's search.
func searchPlan(q string) plan {
	switch {
	case strings.HasPrefix(q, "cus_"):
		return plan{spec: walkSpec{'c', []string{"c.id"}, func(p position) []any { return []any{p.S} }},
			where: []string{"c.id >= $1", "c.id < $2", "NOT c.deleted"}, args: []any{q, string(prefixEnd([]byte(q)))}, total: -1}
	case strings.HasPrefix(q, "user_") || strings.HasPrefix(q, "org_"):
		return plan{spec: walkSpec{'a', []string{"a.id"}, func(p position) []any { return []any{p.ID} }},
			where: []string{"a.id >= $1", "a.id < $2"}, args: []any{q, string(prefixEnd([]byte(q)))}, total: -1}
	}
	q = strings.ToLower(q)
	spec := walkSpecs[proxy.SortEmail]
	spec.tag = 'm'
	return plan{spec: spec, where: []string{"a.listed", "a.list_email >= $1", "a.list_email < $2"},
		args: []any{q, string(prefixEnd([]byte(q)))}, total: -1}
}

// ListPage is one page of the admin listing (proxy.UserPage's contract,
// as bolt's ListPage).
func (s *Store) ListPage(ctx context.Context, f proxy.UserFilter) (proxy.UserPage, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, proxy.MaxUsersPage)
	now := s.now()
	wrap := func(err error) (proxy.UserPage, error) {
		return proxy.UserPage{}, fmt.Errorf("postgres: list users: %w", err)
	}
	p, err := s.planList(ctx, &f)
	if err != nil {
		return wrap(err)
	}
	back := f.Before != "" || f.Last
	forward := f.Desc == back
	var start *position
	switch {
	case f.Before != "":
		pos, err := decodeCursor(f.Before, p.spec.tag)
		if err != nil {
			return wrap(err)
		}
		start = &pos
	case f.After != "" && !back:
		pos, err := decodeCursor(f.After, p.spec.tag)
		if err != nil {
			return wrap(err)
		}
		start = &pos
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return wrap(err)
	}
	defer tx.Rollback(ctx)
	type row struct {
		pos position
		sum proxy.UserSummary
	}
	var (
		rows    []row
		scanned int
		lastPos position
		more    bool
	)
	batch := f.Limit + 1
	for len(rows) <= f.Limit && scanned <= maxScan {
		got, err := s.listBatch(ctx, tx, &p, start, forward, batch)
		if err != nil {
			return wrap(err)
		}
		views, err := accountViews(ctx, tx, got)
		if err != nil {
			return wrap(err)
		}
		for _, e := range got {
			if len(rows) > f.Limit {
				break
			}
			if scanned++; scanned > maxScan {
				break
			}
			lastPos = e.pos
			pos := e.pos
			start = &pos
			if e.id == "" {
				continue
			}
			subject, err := proxy.ParseSubject(e.id)
			if err != nil {
				continue
			}
			pa, listed := views[subject.ID]
			if !listed {
				continue
			}
			sum := pa.Summary(f.Policy, now)
			if !f.Match(&sum) {
				continue
			}
			rows = append(rows, row{e.pos, sum})
		}
		if len(got) < batch {
			break // the walk's end
		}
		batch = min(batch*2, 1000)
	}
	more = len(rows) > f.Limit || scanned > maxScan
	if len(rows) > f.Limit {
		rows = rows[:f.Limit]
		lastPos = rows[len(rows)-1].pos
	}
	page := proxy.UserPage{Total: p.total}
	var cont string
	if more {
		cont = encodeCursor(p.spec.tag, lastPos)
	}
	if back {
		slices.Reverse(rows)
		page.Prev = cont
		if f.Before != "" && len(rows) > 0 {
			page.Next = encodeCursor(p.spec.tag, rows[len(rows)-1].pos)
		}
	} else {
		page.Next = cont
		if f.After != "" && len(rows) > 0 {
			page.Prev = encodeCursor(p.spec.tag, rows[0].pos)
		}
	}
	for _, r := range rows {
		page.Users = append(page.Users, r.sum)
	}
	return page, nil
}

// batchSQL is the query of one batch of a walk: a keyset from the
// cursor's position, in the order of the sort's partial index, limited.
func (p *plan) batchSQL(start *position, forward bool, n int) (string, []any) {
	where := slices.Clone(p.where)
	args := slices.Clone(p.args)
	cols := strings.Join(p.spec.cols, ", ")
	op, dir := ">", "ASC"
	if !forward {
		op, dir = "<", "DESC"
	}
	if start != nil {
		vals := p.spec.pos(*start)
		ph := make([]string, len(vals))
		for i, v := range vals {
			args = append(args, v)
			ph[i] = fmt.Sprintf("$%d", len(args))
		}
		where = append(where, fmt.Sprintf("(%s) %s (%s)", cols, op, strings.Join(ph, ", ")))
	}
	order := make([]string, len(p.spec.cols))
	for i, c := range p.spec.cols {
		order[i] = c + " " + dir
	}
	args = append(args, n)
	if p.spec.tag == 'c' {
		return fmt.Sprintf(`SELECT 0, 0, c.id, c.subject FROM customers c WHERE %s ORDER BY %s LIMIT $%d`,
			strings.Join(where, " AND "), strings.Join(order, ", "), len(args)), args
	}
	if p.rare {
		// The filter's rows first, by its index (MATERIALIZED keeps the
		// planner from folding the filter back into a walk of the
		// sort's index), then the cursor and the order on them.
		cursor := "true"
		if start != nil {
			cursor = where[len(where)-1]
		}
		sql := fmt.Sprintf(`WITH a AS MATERIALIZED (SELECT a.list_rank, a.first_s, a.last_s, a.list_email, a.id FROM accounts a WHERE %s)
			SELECT a.list_rank, CASE WHEN $%d = 'f' THEN a.first_s ELSE a.last_s END, a.list_email, a.id FROM a WHERE %s ORDER BY %s LIMIT $%d`,
			strings.Join(p.where, " AND "), len(args)+1, cursor, strings.Join(order, ", "), len(args))
		return sql, append(args, string(p.spec.tag))
	}
	sql := fmt.Sprintf(`SELECT a.list_rank, CASE WHEN $%d = 'f' THEN a.first_s ELSE a.last_s END, a.list_email, a.id FROM accounts a WHERE %s ORDER BY %s LIMIT $%d`,
		len(args)+1, strings.Join(where, " AND "), strings.Join(order, ", "), len(args))
	return sql, append(args, string(p.spec.tag))
}

type walkEntry struct {
	pos position
	id  string // the subject ("": a customer linked to nobody)
}

// listBatch reads the next n positions of the walk after start
// (exclusive), by the sort's index.
func (s *Store) listBatch(ctx context.Context, q querier, p *plan, start *position, forward bool, n int) ([]walkEntry, error) {
	sql, args := p.batchSQL(start, forward, n)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []walkEntry
	for rows.Next() {
		var (
			e    walkEntry
			s, i string
		)
		if err := rows.Scan(&e.pos.Rank, &e.pos.N, &s, &i); err != nil {
			return nil, err
		}
		if p.spec.tag == 'c' {
			e.pos.S, e.pos.ID, e.id = s, s, i
		} else {
			e.pos.ID, e.id = i, i
			if p.spec.tag == 'e' || p.spec.tag == 'm' {
				e.pos.S = s
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ListUsers is ListPage's users and next cursor (the admin API).
func (s *Store) ListUsers(ctx context.Context, f proxy.UserFilter) ([]proxy.UserSummary, string, error) {
	page, err := s.ListPage(ctx, f)
	return page.Users, page.Next, err
}

// accountViews reads what the listing shows of a batch's subjects, as
// getAccount and accountView would one by one, in three queries: one by
// one, a page of 100 was 300 round trips (README "Scale", "A million
// users"). A subject with no account, or one its view leaves unlisted, is
// not in the map.
func accountViews(ctx context.Context, q querier, batch []walkEntry) (map[string]proxy.Account, error) {
	subjects := map[string]proxy.Subject{}
	var ids []string
	for _, e := range batch {
		if e.id == "" {
			continue // a customer linked to nobody
		}
		subject, err := proxy.ParseSubject(e.id)
		if err != nil {
			continue
		}
		if _, dup := subjects[subject.ID]; !dup {
			subjects[subject.ID] = subject
			ids = append(ids, subject.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	accounts := make(map[string]account, len(ids))
	var custIDs []string
	err := queryEach(ctx, q, `SELECT id, `+accountColumns+` FROM accounts WHERE id = ANY($1)`, ids, func(id *string, row pgx.Row) error {
		a, err := scanAccount(row)
		if err != nil {
			return fmt.Errorf("account %s: %w", *id, err)
		}
		accounts[*id] = a
		if a.Customer != "" {
			custIDs = append(custIDs, a.Customer)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	customers := make(map[string]*customerRecord, len(custIDs))
	if len(custIDs) > 0 {
		err := queryEach(ctx, q, `SELECT id, `+customerColumns+` FROM customers WHERE id = ANY($1)`, custIDs, func(id *string, row pgx.Row) error {
			rec, err := scanCustomer(row)
			if err != nil {
				return fmt.Errorf("customer %s: %w", *id, err)
			}
			customers[*id] = &rec
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	comps := map[string][]proxy.Comp{}
	rows, err := q.Query(ctx, `SELECT `+compColumns+` FROM comps WHERE subject = ANY($1) ORDER BY subject, created_at, id`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanComp(rows)
		if err != nil {
			return nil, err
		}
		comps[c.Subject.ID] = append(comps[c.Subject.ID], c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	views := make(map[string]proxy.Account, len(accounts))
	for id, a := range accounts {
		var cust *customerRecord
		if a.Customer != "" {
			cust = customers[a.Customer]
		}
		if pa, listed := a.View(subjects[id], cust, comps[id]); listed {
			views[id] = pa
		}
	}
	return views, nil
}

// queryEach runs a query whose first column is a row's ID, keyed by ids,
// and hands each its row: scanning it fills id with the first column and
// the scan's destinations with the rest.
func queryEach(ctx context.Context, q querier, sql string, ids []string, each func(id *string, row pgx.Row) error) error {
	rows, err := q.Query(ctx, sql, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := each(&id, idRow{rows, &id}); err != nil {
			return err
		}
	}
	return rows.Err()
}

// idRow scans a row's first column into id, the rest into a scan's
// destinations.
type idRow struct {
	pgx.Row
	id *string
}

func (r idRow) Scan(dest ...any) error { return r.Row.Scan(append([]any{r.id}, dest...)...) }
