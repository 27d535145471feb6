package e2e

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardListLiveRows: clusters other clients create appear in the
// open list as the server renders its rows (GET /clusters/{name}/row),
// the empty-list message giving way to the first; the name and phase
// filters hold for them; an added row then follows its cluster live.
func TestDashboardListLiveRows(t *testing.T) {
	t.Parallel()
	s := startService(t, options{})
	s.putCredential("prod-credentials", `{"provider":"hetzner","hcloudToken":"`+hcloudToken+`"}`)
	ctx := browser(t)
	signIn(t, ctx, s)
	live := chromedp.WaitVisible(chromedp.Search(`//span[@id="live"][.="live"]`))

	// The empty list: a cluster of the CLI's current shape (its region in
	// spec.provider.config) appears complete, and the message goes.
	run(t, ctx, 30*time.Second, "empty list", chromedp.WaitVisible(chromedp.Search(`//p[@id="empty"][contains(., "No clusters yet")]`)), live)
	s.submit(warnedSpec)
	run(t, ctx, 30*time.Second, "the first cluster appears",
		chromedp.WaitVisible(chromedp.Search(`//tr[@data-cluster="warned"]/td[@data-field="region"][.="fsn1"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#empty`)),
	)
	if row := eval[string](t, ctx, "the new row", `[...document.querySelectorAll('tr[data-cluster="warned"] td')].map(td => td.textContent.trim()).join("|")`); !strings.HasPrefix(row, "warned|hetzner|fsn1|v1.34.2|") {
		t.Fatalf("the new row: %q", row)
	}
	// It is the row the list page renders: the same cells that do not
	// change while the cluster is provisioned, and the same creation time,
	// its age written as the list writes ages.
	const shown = `(row => [...row.querySelectorAll('td')].slice(0, 4).map(td => td.innerHTML.trim()).concat(
		[row.querySelector('time').getAttribute('datetime'), row.querySelector('time').title]))`
	inserted := eval[[]string](t, ctx, "the live row", shown+`(document.querySelector('tr[data-cluster="warned"]'))`)
	rendered := eval[[]string](t, ctx, "the list page's row", `fetch("/").then(r => r.text()).then(page => `+shown+
		`(new DOMParser().parseFromString(page, "text/html").querySelector('tr[data-cluster="warned"]')))`)
	if strings.Join(inserted, "\n") != strings.Join(rendered, "\n") {
		t.Fatalf("the live row differs from the list page's:\ninserted: %q\nrendered: %q", inserted, rendered)
	}
	if age := eval[string](t, ctx, "age", `document.querySelector('tr[data-cluster="warned"] time').textContent`); !regexp.MustCompile(`^\d+[smhd]$`).MatchString(age) {
		t.Fatalf("the live row's age: %q", age)
	}
	// It follows its cluster: deleted, its phase changes in place.
	s.mustDo(http.MethodDelete, "/v1/clusters/warned", "", "", nil, http.StatusAccepted)
	run(t, ctx, 30*time.Second, "the added row follows its cluster",
		chromedp.WaitVisible(chromedp.Search(`//tr[@data-cluster="warned"]//span[@data-field="phase"][.="Deleting" or .="Deleted"]`)),
	)

	// The name filter: a cluster whose name does not match is not added.
	run(t, ctx, 30*time.Second, "name filter", chromedp.Navigate(s.url+"/?q=prod"),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="empty"][contains(., "No cluster matches this filter")]`)), live)
	seed := seedSpecWithoutAddons(t)
	s.submit(strings.Replace(seed, "name: prod\n", "name: other\n", 1))
	s.submit(seed)
	run(t, ctx, 30*time.Second, "the matching cluster appears",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-cluster="prod"]`)),
		chromedp.Sleep(time.Second), // what the other cluster's events could have done
	)
	if n := eval[int](t, ctx, "rows", `document.querySelectorAll('tr[data-cluster]').length`); n != 1 {
		t.Fatalf("%d rows under ?q=prod, want prod's only: %s", n, eval[string](t, ctx, "rows", `document.querySelector('#clusters tbody').innerHTML`))
	}

	// The phase filter: a Pending cluster's row is added hidden.
	run(t, ctx, 30*time.Second, "phase filter", chromedp.Navigate(s.url+"/?phase=Provisioned"), live)
	s.submit(strings.Replace(seed, "name: prod\n", "name: late\n", 1))
	run(t, ctx, 30*time.Second, "the row added", chromedp.WaitReady(chromedp.CSS(`tr[data-cluster="late"]`)))
	if !eval[bool](t, ctx, "hidden", `document.querySelector('tr[data-cluster="late"]').hidden`) {
		t.Fatalf("a %s cluster shows under ?phase=Provisioned", eval[string](t, ctx, "phase", `document.querySelector('tr[data-cluster="late"] [data-field=phase]').textContent`))
	}
}
