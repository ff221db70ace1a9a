package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// page is what every template gets: the person (nil when signed out),
// the page's title and its own data.
type page struct {
	V     *viewer
	Title string
	D     any
	// Server is the server whose pages these are, with its tabs; nil
	// elsewhere.
	Server *serverNav
}

var funcs = template.FuncMap{
	"when":    when,
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"count":   func(n int) string { return thousands(int64(n)) },
	"count64": thousands,
	"percent": percentOf,
	"lower":   strings.ToLower,
	"add":     func(a, b int) int { return a + b },
}

// when is a moment as the console shows it.
func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// thousands writes n with thousands separators: 12,345.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + thousands(-n)
	}
	var b strings.Builder
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// percentOf is part as a percentage of whole, "–" when whole is 0.
func percentOf(part, whole int64) string {
	if whole == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", float64(part)/float64(whole)*100)
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		if path.Base(name) == "layout.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, name)
		if err != nil {
			return nil, err
		}
		pages[strings.TrimSuffix(path.Base(name), ".html")] = t
	}
	return pages, nil
}

// render writes the page name with status; the page is rendered to a
// buffer first so that a template error is a 500, not half a page.
func (c *Console) render(w http.ResponseWriter, v *viewer, status int, name, title string, data any) {
	c.renderPage(w, status, name, page{V: v, Title: title, D: data})
}

func (c *Console) renderPage(w http.ResponseWriter, status int, name string, p page) {
	t, ok := c.pages[name]
	var buf bytes.Buffer
	if !ok {
		c.cfg.Logger.Error("console: no such template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.cfg.Logger.Error("console: rendering failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// redirect answers a form with 303 See Other to target, a path of the
// console.
func redirect(w http.ResponseWriter, r *http.Request, target string) {
	http.Redirect(w, r, target, http.StatusSeeOther)
}
