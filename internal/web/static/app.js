// lok8s dashboard: live updates from the event stream (EventSource, with the
// session cookie), and small conveniences. No inline script anywhere: the
// Content-Security-Policy forbids it.
'use strict';

(function () {
  var body = document.body;

  function text(el, value) { if (el) { el.textContent = value; } }

  function setPhase(el, phase) {
    if (!el) { return; }
    el.textContent = phase;
    el.className = el.className.replace(/\bphase-\S+/g, '') .trim() + ' phase-' + phase;
  }

  // Rows being read for clusters that appeared on the stream, by name: the
  // events that came meanwhile, applied once the row is in.
  var pendingRows = {};

  function findRow(table, name) {
    var rows = table.querySelectorAll('tr[data-cluster]');
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute('data-cluster') === name) { return rows[i]; }
    }
    return null;
  }

  // Clusters list: update a row's phase, operation and nodes; add rows for new clusters.
  function onListEvent(type, ev) {
    var table = document.getElementById('clusters');
    if (!table || !ev.cluster) { return; }
    if (pendingRows[ev.cluster]) { pendingRows[ev.cluster].push([type, ev]); return; }
    var row = findRow(table, ev.cluster);
    if (!row) {
      if (type !== 'cluster.phase') { return; }
      var q = table.getAttribute('data-query');
      if (q && ev.cluster.indexOf(q) < 0) { return; }
      addRow(table, ev.cluster, [[type, ev]]);
      return;
    }
    if (type === 'cluster.phase') {
      setPhase(row.querySelector('[data-field=phase]'), ev.phase);
      var filter = table.getAttribute('data-phase-filter');
      row.hidden = !!filter && filter !== ev.phase;
    } else if (type === 'step') {
      text(row.querySelector('[data-field=operation]'), ev.kind + ': ' + ev.step + ' (' + ev.state + ')');
    } else if (type === 'operation') {
      var cell = row.querySelector('[data-field=operation]');
      if (ev.state !== 'running' || !cell.textContent) { text(cell, ev.kind + ' (' + ev.state + ')'); }
    } else if (type === 'cluster.observed') {
      var ready = 0, desired = 0;
      [ev.controlPlane, ev.workers].forEach(function (r) {
        if (r) { ready += r.ready || 0; desired += r.desired || 0; }
      });
      var nodes = row.querySelector('[data-field=nodes]');
      if (nodes && (ev.controlPlane || ev.workers)) { text(nodes, ready + ' / ' + desired); }
    }
  }

  // addRow reads the row of a cluster that appeared on the stream as the
  // server renders the list's rows (GET /clusters/{name}/row), puts it
  // first, hides the empty-list message and applies the events that came
  // in the meantime, in order: the newest of them has the last word.
  function addRow(table, name, events) {
    pendingRows[name] = events;
    fetch('/clusters/' + encodeURIComponent(name) + '/row', {credentials: 'same-origin', redirect: 'error'})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var queued = pendingRows[name];
        delete pendingRows[name];
        if (html === null) { return; }
        var parsed = document.createElement('template');
        parsed.innerHTML = html;
        var row = parsed.content.querySelector('tr[data-cluster]');
        if (!row || row.getAttribute('data-cluster') !== name) { return; }
        var tbody = table.querySelector('tbody');
        tbody.insertBefore(row, tbody.firstChild);
        var empty = document.getElementById('empty');
        if (empty) { empty.hidden = true; }
        queued.forEach(function (e) { onListEvent(e[0], e[1]); });
      }).catch(function () { delete pendingRows[name]; });
  }

  // The failure record of each operation's last failed step, from the
  // stream, shown when the operation fails.
  var failures = {};

  function showFailure(f) {
    var box = document.getElementById('failure');
    if (!box) { return; }
    if (!f) { box.hidden = true; return; }
    ['step', 'code', 'remediation', 'reason'].forEach(function (k) { text(box.querySelector('[data-field=' + k + ']'), f[k] || ''); });
    text(box.querySelector('[data-field=message]'), f.error || '');
    box.querySelector('[data-field=reason-box]').hidden = !f.reason;
    box.querySelector('[data-field=not-retryable]').hidden = !!f.retryable;
    text(document.getElementById('retry'), f.retryable ? 'Retry' : 'Retry after fixing');
    box.hidden = false;
  }

  // Cluster page: phase, steps, failures, addons, replicas live; a reload link for the rest.
  function onClusterEvent(type, ev) {
    if (type === 'cluster.phase') {
      setPhase(document.getElementById('phase'), ev.phase);
      if (ev.phase !== 'Failed') { showFailure(null); }
    } else if (type === 'step') {
      if (ev.state === 'failed' && ev.code) { failures[ev.operation] = ev; }
      var op = document.querySelector('[data-operation="' + ev.operation + '"]');
      var step = op && op.querySelector('[data-step="' + ev.step + '"]');
      if (step) {
        text(step.querySelector('[data-field=state]'), ev.state);
        step.className = step.className.replace(/\bstate-\S+/g, '').trim() + ' state-' + ev.state;
      } else {
        offerReload();
      }
    } else if (type === 'operation') {
      var o = document.querySelector('[data-operation="' + ev.operation + '"]');
      if (o) { text(o.querySelector('h3 [data-field=state]'), ev.state); } else { offerReload(); }
      if (ev.state === 'failed') { showFailure(failures[ev.operation]); }
      if (ev.state === 'failed' || ev.state === 'succeeded') { offerReload(); }
    } else if (type === 'addon') {
      var a = document.querySelector('[data-addon="' + ev.addon + '"]');
      if (a) { text(a.querySelector('[data-field=state]'), ev.state); } else { offerReload(); }
    } else if (type === 'cluster.observed') {
      offerReload();
    }
  }

  function offerReload() {
    if (document.getElementById('reload')) { return; }
    var live = document.getElementById('live');
    if (!live) { return; }
    var a = document.createElement('a');
    a.id = 'reload';
    a.href = location.pathname;
    a.textContent = 'details changed — refresh';
    live.parentNode.insertBefore(a, live.nextSibling);
    live.parentNode.insertBefore(document.createTextNode(' '), a);
  }

  // seen counts the events applied per cluster and kind ('phase' or 'op'),
  // so a resync never overwrites what a newer event said.
  var seen = {};
  function seenKey(cluster, type) { return cluster + '\u0000' + (type === 'cluster.phase' ? 'phase' : 'op'); }

  function opText(op) {
    return op ? op.kind + (op.step ? ': ' + op.step : '') + ' (' + op.state + ')' : '';
  }

  // resync reads the current state once the stream is open: events between
  // the page's rendering and the stream's start are not replayed.
  function resync() {
    var started = {};
    Object.keys(seen).forEach(function (k) { started[k] = seen[k]; });
    function fresh(cluster, type) { var k = seenKey(cluster, type); return (seen[k] || 0) === (started[k] || 0); }
    var table = document.getElementById('clusters');
    if (table) {
      var apply = function (row, c) {
        var name = row.getAttribute('data-cluster');
        if (fresh(name, 'cluster.phase')) { setPhase(row.querySelector('[data-field=phase]'), c.phase); }
        if (fresh(name, 'step')) { text(row.querySelector('[data-field=operation]'), opText(c.operation)); }
      };
      // One request for the whole list (each item carries its operation);
      // a row the list no longer holds (its cluster has since left the
      // filter, e.g. become Deleted) is read on its own.
      var q = table.getAttribute('data-phase-filter');
      fetch('/v1/clusters?limit=200' + (q ? '&phase=' + encodeURIComponent(q) : ''), {credentials: 'same-origin'})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (list) {
          if (!list) { return; }
          var byName = {};
          list.items.forEach(function (c) { byName[c.name] = c; });
          table.querySelectorAll('tr[data-cluster]').forEach(function (row) {
            var name = row.getAttribute('data-cluster');
            if (byName[name]) { apply(row, byName[name]); return; }
            fetch('/v1/clusters/' + encodeURIComponent(name), {credentials: 'same-origin'})
              .then(function (r) { return r.ok ? r.json() : null; })
              .then(function (c) { if (c) { apply(row, c); } }).catch(function () {});
          });
        }).catch(function () {});
      return;
    }
    var cluster = body.getAttribute('data-cluster');
    if (!cluster) { return; }
    fetch('/v1/clusters/' + encodeURIComponent(cluster) + '/status', {credentials: 'same-origin'})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (st) {
        if (!st) { return; }
        var phase = document.getElementById('phase');
        if (phase && fresh(cluster, 'cluster.phase') && phase.textContent !== st.phase) { setPhase(phase, st.phase); offerReload(); }
        if (fresh(cluster, 'cluster.phase') && fresh(cluster, 'step')) {
          var e = st.error;
          showFailure(e ? {step: e.step, code: e.code, retryable: e.retryable, remediation: e.remediation, reason: e.reason, error: e.message} : null);
        }
        var op = st.operation && document.querySelector('[data-operation="' + st.operation.id + '"]');
        if (st.operation && !op) { offerReload(); return; }
        if (!fresh(cluster, 'step')) { return; }
        (st.operation ? st.operation.steps : []).forEach(function (s) {
          onClusterEvent('step', {operation: st.operation.id, step: s.name, state: s.state});
        });
      }).catch(function () {});
  }

  var stream = body.getAttribute('data-stream');
  if (stream && window.EventSource) {
    var onEvent = document.getElementById('clusters') ? onListEvent : onClusterEvent;
    var live = document.getElementById('live');
    var es = new EventSource(stream);
    es.onopen = function () { text(live, 'live'); if (live) { live.className = 'live on'; } resync(); };
    es.onerror = function () { text(live, 'reconnecting…'); if (live) { live.className = 'live'; } };
    // Resumed after events were pruned: what the page shows may be stale.
    es.addEventListener('stream.gap', function () { offerReload(); resync(); });
    ['cluster.phase', 'cluster.observed', 'operation', 'step', 'addon'].forEach(function (type) {
      es.addEventListener(type, function (msg) {
        var ev;
        try { ev = JSON.parse(msg.data); } catch (e) { return; }
        if (ev.cluster) { var k = seenKey(ev.cluster, type); seen[k] = (seen[k] || 0) + 1; }
        onEvent(type, ev);
      });
    });
  }

  // Delete confirmations: the button works once the name is typed exactly.
  document.querySelectorAll('input[data-must-equal]').forEach(function (input) {
    var button = input.form.querySelector('button[type=submit]');
    function check() { button.disabled = input.value !== input.getAttribute('data-must-equal'); }
    input.addEventListener('input', check);
    check();
  });

  // The errors beside the spec's lines open at the first one.
  var firstError = document.querySelector('.spec-lines li.has-error');
  if (firstError) { firstError.parentNode.scrollTop = Math.max(0, firstError.offsetTop - 60); }

  // An error beside a line of the spec moves the editor's cursor to it.
  document.querySelectorAll('a.field-error[data-line]').forEach(function (a) {
    a.addEventListener('click', function (e) {
      var editor = document.getElementById('spec');
      if (!editor) { return; }
      e.preventDefault();
      var line = parseInt(a.getAttribute('data-line'), 10), at = 0;
      var lines = editor.value.split('\n');
      for (var i = 0; i < line - 1 && i < lines.length; i++) { at += lines[i].length + 1; }
      editor.focus();
      editor.setSelectionRange(at, at + (lines[line - 1] || '').length);
    });
  });

  // "Load a file" fills the spec textarea.
  document.querySelectorAll('input[type=file][data-fills]').forEach(function (input) {
    input.addEventListener('change', function () {
      var target = document.getElementById(input.getAttribute('data-fills'));
      if (!input.files.length || !target) { return; }
      input.files[0].text().then(function (t) { target.value = t; });
    });
  });
})();
