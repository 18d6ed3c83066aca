// eddy dashboard: plain JavaScript, no library, no network beyond this
// server. Every view is a function of the URL hash (#/view/arg?query) that
// reads the JSON API under /api/ and builds the DOM. When a view has its
// data, <main> carries data-state="ready" (the headless tests wait for it).
// Actions (redrive, purge, rebuild) send the admin token the user typed;
// it is kept in sessionStorage for this tab only and sent only to /api/.
'use strict';
(function () {
  const view = document.getElementById('view');
  const footer = document.getElementById('footer');
  let token = sessionStorage.getItem('eddy.token') || '';
  let role = null;        // the role of `token`, per /api/session
  let openReads = true;   // reads need no token here (loopback, or no tokens)
  let timers = [];        // cleared on navigation
  let aborts = [];        // open streams, aborted on navigation

  // ---- helpers -------------------------------------------------------------

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }
  const SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {}))
      if (k === 'text') e.textContent = v; else e.setAttribute(k, String(v));
    for (const kid of kids.flat()) if (kid) e.append(kid);
    return e;
  }
  const enc = encodeURIComponent;
  function link(href, text) { return el('a', { href, text }); }
  function eventLink(id) { return link('#/events/' + enc(id), id); }
  function streamLink(id) { return link('#/streams/' + enc(id), id); }
  function num(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'); }
  function when(iso) {
    if (!iso) return '–';
    return iso.replace('T', ' ').replace(/\.(\d{3})\d*Z$/, '.$1Z');
  }
  function pretty(v) { return el('pre', { text: JSON.stringify(v, null, 2) }); }
  function query(q) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
    const s = p.toString();
    return s ? '?' + s : '';
  }

  async function api(path, opts) {
    const headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    const res = await fetch('/api/' + path, Object.assign({ headers, cache: 'no-store' }, opts || {}));
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) {
      const err = new Error(body && body.message ? body.message : res.status + ' ' + res.statusText);
      err.status = res.status;
      throw err;
    }
    return body;
  }

  function show(name, ...nodes) {
    view.dataset.view = name;
    view.dataset.state = 'loading';
    view.replaceChildren(...nodes.flat());
    for (const a of document.querySelectorAll('#nav a'))
      a.classList.toggle('active', a.dataset.view === name);
  }
  function ready() { view.dataset.state = 'ready'; }
  function failed(err) {
    view.append(el('div', { class: 'error', text: err.message || String(err) }));
    view.dataset.state = 'error';
  }
  function every(ms, fn) { timers.push(setInterval(fn, ms)); }
  function isAdmin() { return role === 'admin'; }
  function adminButton(label, cls, fn) {
    const b = el('button', { type: 'button', class: cls, text: label,
      title: isAdmin() ? null : 'needs the admin token (Token, top right)' });
    b.disabled = !isAdmin();
    b.addEventListener('click', async () => {
      b.disabled = true;
      try { await fn(); } catch (e) { alertBox(e); }
      b.disabled = !isAdmin();
    });
    return b;
  }
  function alertBox(e) {
    view.prepend(el('div', { class: 'error', text: e.message || String(e) }));
  }
  function table(head, rows) {
    return el('table', {},
      el('thead', {}, el('tr', {}, head.map(h => el('th', { class: h.num ? 'num' : null, text: h.t || h })))),
      el('tbody', {}, rows));
  }
  function td(v, cls) { return el('td', { class: cls }, v); }

  // ---- the session (admin token) ---------------------------------------------

  async function refreshSession() {
    const r = document.getElementById('role');
    try {
      const s = await api('session');
      role = s.role;
      openReads = s.loopback || !s.tokens;
      footer.textContent = 'eddy ' + s.version + (s.tokens ? '' : ' · no tokens: read-only');
      if (!s.tokens) { r.textContent = 'read-only (no tokens)'; r.className = 'muted'; }
      else if (role === 'admin') { r.textContent = 'admin'; r.className = 'admin'; }
      else if (role === 'unknown') { r.textContent = 'unknown token'; r.className = 'muted'; }
      else r.textContent = role ? role + ' token' : 'no token';
    } catch (e) {
      r.textContent = 'token refused';
      role = null;
    }
  }
  document.getElementById('token-button').addEventListener('click', () => {
    const box = document.getElementById('session');
    if (box.querySelector('input')) return;
    const input = el('input', { type: 'password', placeholder: 'admin (or read) token', autocomplete: 'off', size: 18 });
    const use = el('button', { type: 'button', text: 'Use' });
    const clear = el('button', { type: 'button', text: 'Forget' });
    const done = async () => {
      token = input.value.trim();
      if (token) sessionStorage.setItem('eddy.token', token); else sessionStorage.removeItem('eddy.token');
      input.remove(); use.remove(); clear.remove();
      await refreshSession();
      route();
    };
    use.addEventListener('click', done);
    input.addEventListener('keydown', e => { if (e.key === 'Enter') done(); });
    clear.addEventListener('click', () => { input.value = ''; done(); });
    box.append(input, use, clear);
    input.focus();
  });

  // ---- charts ------------------------------------------------------------------

  function lineChart(points, key, color, unit) {
    const W = 600, H = 160, L = 46, B = 20, T = 8;
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img' });
    const vals = points.map(p => p[key]);
    const max = Math.max(1, ...vals);
    const t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
    const x = t => L + (W - L - 6) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
    const y = v => T + (H - T - B) * (1 - v / max);
    for (const f of [0, 0.5, 1]) {
      s.append(svg('line', { x1: L, x2: W - 6, y1: y(max * f), y2: y(max * f), stroke: '#e5e7eb' }));
      s.append(svg('text', { x: L - 6, y: y(max * f) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#6b7785',
        text: (max * f >= 100 ? Math.round(max * f) : +(max * f).toFixed(1)).toLocaleString('en-US') }));
    }
    if (points.length > 1) {
      const d = points.map((p, i) => (i ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p[key]).toFixed(1)).join(' ');
      s.append(svg('path', { d: d + ` L${x(t1)} ${y(0)} L${x(t0)} ${y(0)} Z`, fill: color, 'fill-opacity': 0.12, stroke: 'none' }));
      s.append(svg('path', { d, fill: 'none', stroke: color, 'stroke-width': 2 }));
      const fmt = t => new Date(t).toISOString().slice(11, 19);
      s.append(svg('text', { x: L, y: H - 4, 'font-size': 11, fill: '#6b7785', text: fmt(t0) }));
      s.append(svg('text', { x: W - 6, y: H - 4, 'text-anchor': 'end', 'font-size': 11, fill: '#6b7785', text: fmt(t1) + ' UTC' }));
    } else {
      s.append(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', 'font-size': 12, fill: '#6b7785',
        text: 'collecting samples (one a second)…' }));
    }
    s.append(svg('title', { text: unit }));
    return s;
  }

  // ---- views ---------------------------------------------------------------------

  async function overview() {
    const cards = el('div', { class: 'cards' });
    const health = el('div');
    const charts = el('div', { class: 'charts' });
    show('overview', el('h1', { text: 'Overview' }), health, cards, charts);
    const draw = async () => {
      const o = await api('overview');
      const c = o.counts || {}, sg = c.sagas || {};
      const last = o.history.length ? o.history[o.history.length - 1] : { rate: 0, lag: 0 };
      const card = (label, value, sub, href) => el('div', { class: 'card' },
        el('div', { class: 'label', text: label }),
        el('div', { class: 'value' }, href ? link(href, value) : value),
        sub ? el('div', { class: 'sub', text: sub }) : null);
      cards.replaceChildren(
        card('Events', num(o.store.events), 'head position ' + num(o.store.head), '#/streams'),
        card('Events / s', (+last.rate).toFixed(1), 'last second'),
        card('Streams', num(o.store.streams), null, '#/streams'),
        card('Max lag', num(last.lag), 'events behind the head', '#/subscriptions'),
        card('Dead letters', num(c.dead_letters), null, '#/deadletters'),
        card('Sagas running', num(sg.running), num(sg.completed) + ' completed, ' + num(sg.failed) + ' failed', '#/sagas'),
        card('Store size', (o.store.file_bytes / 1048576).toFixed(1) + ' MiB', o.store.backend + ', schema ' + o.store.schema_version),
        card('Stream clients', num(o.stream_clients), 'Server-Sent Events'));
      health.replaceChildren(el('p', {},
        el('span', { class: 'badge ' + (o.ready ? 'ok' : 'bad'), text: o.ready ? 'ready' : 'not ready' }), ' ',
        o.problems.length ? o.problems.join('; ') : 'store reachable, no subscription stalled'));
      charts.replaceChildren(
        el('div', { class: 'chart' }, el('h3', { text: 'Events per second' }), lineChart(o.history, 'rate', '#1d4ed8', 'events/s')),
        el('div', { class: 'chart' }, el('h3', { text: 'Largest subscription lag (events)' }), lineChart(o.history, 'lag', '#b45309', 'events')));
      ready();
    };
    await draw();
    every(2000, () => draw().catch(() => {}));
  }

  async function streams(q) {
    const o = await api('streams' + query({ after: q.get('after'), limit: 50 }));
    show('streams', el('h1', { text: 'Streams' }),
      table(['Stream', { t: 'Version', num: true }],
        o.streams.map(s => el('tr', {}, td(streamLink(s.id)), td(num(s.version), 'num')))),
      el('div', { class: 'pager' },
        q.get('after') ? link('#/streams', 'first page') : null,
        o.next ? link('#/streams' + query({ after: o.next }), 'next page →') : null));
    if (!o.streams.length) view.append(el('p', { class: 'muted', text: 'The store has no streams yet.' }));
    ready();
  }

  async function stream(id, q) {
    const from = q.get('from') || '';
    const o = await api('streams/' + enc(id) + query({ from, limit: 50 }));
    show('stream', el('h1', {}, 'Stream ', el('code', { text: id })),
      el('p', { class: 'muted', text: 'version ' + o.version }),
      table([{ t: 'Version', num: true }, { t: 'Position', num: true }, 'Type', 'Time', 'Event id'],
        o.events.map(r => el('tr', {}, td(num(r.version), 'num'), td(num(r.position), 'num'),
          td(r.event.type), td(when(r.event.time || r.recorded), 'nowrap'), td(eventLink(r.event.id))))),
      el('div', { class: 'pager' },
        from ? link('#/streams/' + enc(id), 'first page') : null,
        o.next ? link('#/streams/' + enc(id) + query({ from: o.next }), 'next page →') : null));
    ready();
  }

  async function eventView(id) {
    const r = await api('events/' + enc(id));
    const ev = r.event;
    const attrs = el('div', { class: 'kv' });
    const add = (k, v) => attrs.append(el('div', { text: k }), el('div', {}, v));
    add('position', num(r.position));
    add('stream', streamLink(r.stream));
    add('stream version', num(r.version));
    add('recorded', when(r.recorded));
    for (const [k, v] of Object.entries(ev)) {
      if (k === 'data' || k === 'data_base64') continue;
      if (k === 'causationid') add(k, eventLink(v));
      else if (k === 'correlationid') add(k, link('#/trace/' + enc(v), v));
      else add(k, typeof v === 'string' ? v : JSON.stringify(v));
    }
    const caused = r.caused || [];
    show('event', el('h1', {}, 'Event ', el('code', { text: ev.id })), attrs,
      el('h2', { text: 'Data' }),
      'data' in ev ? pretty(ev.data) : 'data_base64' in ev ? el('pre', { text: ev.data_base64 }) : el('p', { class: 'muted', text: 'no data' }),
      el('h2', { text: 'Caused' }),
      caused.length ? table(['Kind', 'Name', 'Id'], caused.map(c => el('tr', {}, td(c.kind), td(c.name),
        td(c.kind === 'event' ? eventLink(c.id) : el('code', { text: c.id })))))
        : el('p', { class: 'muted', text: 'nothing recorded as caused by this event' }),
      el('p', {}, link('#/trace/' + enc(r.correlation || ev.id), 'the whole flow as a tree →')));
    ready();
  }

  // Server-Sent Events. Where reads need no token, the browser's own
  // EventSource (it resumes with Last-Event-ID by itself); elsewhere over
  // fetch, which can send the Authorization header, with the same rule.
  // `onEvent` returning false closes the stream.
  function follow(path, onEvent, onSpecial, onOpen) {
    if (openReads) {
      const es = new EventSource(path);
      aborts.push({ abort: () => es.close() });
      es.onopen = onOpen;
      es.onmessage = m => { if (onEvent(JSON.parse(m.data)) === false) es.close(); };
      for (const name of ['eddy.dropped', 'eddy.closing', 'eddy.end', 'eddy.error'])
        es.addEventListener(name, m => onSpecial(name, JSON.parse(m.data)));
      return () => es.close();
    }
    const ctl = new AbortController();
    aborts.push(ctl);
    let lastId = null, stopped = false;
    const run = async () => {
      while (!stopped) {
        const headers = {};
        if (token) headers.Authorization = 'Bearer ' + token;
        if (lastId !== null) headers['Last-Event-ID'] = lastId;
        try {
          const res = await fetch(path, { headers, signal: ctl.signal, cache: 'no-store' });
          if (!res.ok) { onSpecial('error', { reason: res.status + ' ' + res.statusText }); return; }
          onOpen();
          const reader = res.body.getReader();
          const dec = new TextDecoder();
          let buf = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += dec.decode(value, { stream: true });
            let i;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i); buf = buf.slice(i + 2);
              let id = null, name = 'message', data = '';
              for (const line of block.split('\n')) {
                if (line.startsWith('id: ')) id = line.slice(4);
                else if (line.startsWith('event: ')) name = line.slice(7);
                else if (line.startsWith('data: ')) data += line.slice(6);
              }
              if (!data) continue;
              const obj = JSON.parse(data);
              if (name === 'message') { lastId = id; if (onEvent(obj) === false) { stop(); return; } }
              else { onSpecial(name, obj); if (name !== 'eddy.dropped') { stopped = true; return; } }
            }
          }
        } catch (e) {
          if (stopped || ctl.signal.aborted) return;
        }
        await new Promise(r => setTimeout(r, 2000)); // then reconnect
      }
    };
    const stop = () => { stopped = true; ctl.abort(); };
    run();
    return stop;
  }

  function tail(q) {
    const max = +(q.get('max') || 0);
    const type = q.get('type') || '';
    const params = { type };
    if (q.get('from')) params.from = q.get('from');
    const body = el('tbody');
    const status = el('p', { class: 'muted', text: 'connecting…' });
    const form = el('form', { class: 'filters' },
      el('label', {}, 'type (x.y, x.* or empty)', el('input', { name: 'type', value: type })),
      el('button', { type: 'submit', text: 'Follow' }));
    form.addEventListener('submit', e => {
      e.preventDefault();
      location.hash = '#/tail' + query({ type: form.elements.type.value.trim() });
    });
    show('tail', el('h1', { text: 'Live tail' }), form, status,
      el('table', {}, el('thead', {}, el('tr', {},
        ['Position', 'Recorded', 'Stream', 'Type', 'Event id'].map(h => el('th', { text: h })))), body));
    let seen = 0;
    follow('/api/events/stream' + query(params), r => {
      body.prepend(el('tr', { class: 'tail-row', 'data-position': r.position },
        td(num(r.position), 'num'), td(when(r.recorded), 'nowrap'), td(streamLink(r.stream)),
        td(r.event.type), td(eventLink(r.event.id))));
      while (body.children.length > 200) body.lastChild.remove();
      seen++;
      status.textContent = seen + ' event' + (seen === 1 ? '' : 's') + ' received';
      if (max && seen >= max) { ready(); return false; }
      return true;
    }, (name, obj) => {
      view.insertBefore(el('div', { class: name === 'eddy.dropped' || name === 'error' ? 'error' : 'notice',
        text: name + ': ' + (obj.reason || '') }), status);
    }, () => {
      status.textContent = 'following new events' + (type ? ' of type ' + type : '') + '…';
      if (!max) ready();
    });
  }

  async function subscriptions() {
    const o = await api('subscriptions');
    const progress = el('div');
    const rows = o.subscriptions.sort((a, b) => a.name.localeCompare(b.name)).map(s => {
      const lag = s.lag === null ? '–' : num(s.lag);
      const state = el('span', { class: 'badge ' + (s.stalled ? 'bad' : s.state === 'running' ? 'ok' : s.state === 'rebuilding' ? 'warn' : ''),
        text: s.stalled ? 'stalled' : s.state });
      return el('tr', { 'data-name': s.name },
        td(el('strong', { text: s.name })), td(s.kind), td(s.types.join(', ') || s.pattern || '–'),
        td(s.checkpoint === null ? '–' : num(s.checkpoint), 'num'), td(lag, 'num'), td(state),
        td(s.dead_letters ? link('#/deadletters' + query({ handler: s.name }), num(s.dead_letters)) : '0', 'num'),
        td(s.kind === 'projection' && s.rebuildable
          ? adminButton('Rebuild', '', async () => {
            await api('projections/' + enc(s.name) + '/rebuild', { method: 'POST' });
            watchRebuild(s.name, progress);
          }) : null));
    });
    show('subscriptions', el('h1', { text: 'Subscriptions and projections' }),
      el('p', { class: 'muted', text: 'head position ' + num(o.head) + '. Checkpoint and lag come from this process\'s subscriptions and from the projections recorded in the store.' }),
      progress,
      table(['Name', 'Kind', 'Event types', { t: 'Checkpoint', num: true }, { t: 'Lag', num: true }, 'State', { t: 'Dead letters', num: true }, ''], rows));
    if (o.rebuild) watchRebuild(o.rebuild.name, progress);
    ready();
  }

  function watchRebuild(name, box) {
    const bar = el('div');
    const text = el('span', { class: 'muted' });
    box.replaceChildren(el('div', { class: 'notice' }, 'Rebuild of ', el('strong', { text: name }), ' ',
      el('div', { class: 'progress' }, bar), text));
    const poll = async () => {
      const r = await api('projections/' + enc(name) + '/rebuild');
      const pct = r.total ? Math.round(100 * r.done / r.total) : (r.running ? 0 : 100);
      bar.style.width = pct + '%';
      text.textContent = ` ${num(r.done)} / ${num(r.total)} events` + (r.running ? '' : r.error ? ' — failed: ' + r.error : ' — done');
      return r.running;
    };
    const t = setInterval(async () => { try { if (!(await poll())) clearInterval(t); } catch (e) { clearInterval(t); } }, 500);
    timers.push(t);
    poll().catch(() => {});
  }

  async function deadLetters(q) {
    const f = { handler: q.get('handler') || '', type: q.get('type') || '', since: q.get('since') || '' };
    const o = await api('deadletters' + query(f));
    const form = el('form', { class: 'filters' },
      el('label', {}, 'handler', el('input', { name: 'handler', value: f.handler })),
      el('label', {}, 'type (x.y or x.*)', el('input', { name: 'type', value: f.type })),
      el('label', {}, 'failed since (RFC 3339)', el('input', { name: 'since', value: f.since, placeholder: '2024-05-01T00:00:00Z' })),
      el('button', { type: 'submit', text: 'Filter' }));
    form.addEventListener('submit', e => {
      e.preventDefault();
      const v = {};
      for (const k of ['handler', 'type', 'since']) v[k] = form.elements[k].value.trim();
      location.hash = '#/deadletters' + query(v);
    });
    const rows = o.dead_letters.map(d => el('tr', { 'data-id': d.id },
      td(link('#/deadletters/' + d.id, '#' + d.id)), td(d.handler), td(d.type || '–'),
      td(d.event_id ? eventLink(d.event_id) : '–'), td(num(d.attempts), 'num'),
      td(when(d.last_failure), 'nowrap'), td(d.status), td(el('code', { text: d.error })),
      td(el('span', { class: 'actions' },
        adminButton('Redrive', '', async () => { await api('deadletters/' + d.id + '/redrive', { method: 'POST' }); route(); }),
        adminButton('Delete', 'danger', async () => { await api('deadletters/' + d.id, { method: 'DELETE' }); route(); })))));
    show('deadletters', el('h1', { text: 'Dead letters' }), form,
      el('div', { class: 'actions' },
        adminButton('Redrive all' + (f.handler ? ' of ' + f.handler : ''), '', async () => {
          await api('deadletters/redrive' + query({ handler: f.handler }), { method: 'POST' }); route(); }),
        adminButton('Purge' + (f.handler ? ' ' + f.handler : ' all'), 'danger', async () => {
          if (!confirm('Delete these dead letters for good?')) return;
          await api('deadletters/purge' + query({ handler: f.handler }), { method: 'POST' }); route(); })),
      el('p', { class: 'muted', text: o.total + ' dead letter' + (o.total === 1 ? '' : 's') +
        (o.total > o.dead_letters.length ? ' (showing ' + o.dead_letters.length + ')' : '') +
        (isAdmin() ? '' : '; redrive and purge need the admin token') }),
      rows.length ? table(['Id', 'Handler', 'Type', 'Event', { t: 'Attempts', num: true }, 'Last failure', 'Status', 'Error', ''], rows)
        : el('p', { class: 'muted', text: 'No dead letters.' }));
    ready();
  }

  async function deadLetter(id) {
    const d = await api('deadletters/' + enc(id));
    const kv = el('div', { class: 'kv' });
    for (const k of ['handler', 'status', 'position', 'attempts', 'error', 'error_name', 'first_failure', 'last_failure'])
      kv.append(el('div', { text: k }), el('div', { text: String(d[k]) }));
    show('deadletter', el('h1', { text: 'Dead letter #' + d.id }), kv,
      el('div', { class: 'actions' },
        adminButton('Redrive', 'primary', async () => { await api('deadletters/' + d.id + '/redrive', { method: 'POST' }); route(); }),
        adminButton('Delete', 'danger', async () => { await api('deadletters/' + d.id, { method: 'DELETE' }); location.hash = '#/deadletters'; })),
      el('h2', {}, 'Event ', d.event ? eventLink(d.event.id) : ''), d.event ? pretty(d.event) : null);
    ready();
  }

  async function sagas(q) {
    const f = { state: q.get('state') || '', type: q.get('type') || '' };
    const o = await api('sagas' + query(Object.assign({ limit: 200 }, f)));
    const sel = el('select', { name: 'state' }, ['', 'running', 'completed', 'failed', 'CONFIRMED', 'CANCELLED']
      .map(s => el('option', { value: s, text: s || 'any', selected: s === f.state })));
    const form = el('form', { class: 'filters' },
      el('label', {}, 'state or result', sel),
      el('label', {}, 'saga type', el('input', { name: 'type', value: f.type })),
      el('button', { type: 'submit', text: 'Filter' }));
    form.addEventListener('submit', e => {
      e.preventDefault();
      location.hash = '#/sagas' + query({ state: sel.value, type: form.elements.type.value.trim() });
    });
    show('sagas', el('h1', { text: 'Sagas' }), form,
      o.sagas.length ? table(['Type', 'Instance', 'Status', 'Result', { t: 'Events', num: true }, 'Updated'],
        o.sagas.map(s => el('tr', {}, td(s.type), td(link('#/sagas/' + enc(s.id), s.id)),
          td(el('span', { class: 'badge ' + (s.status === 'completed' ? 'ok' : s.status === 'failed' ? 'bad' : 'warn'), text: s.status })),
          td(s.result || '–'), td(num(s.version), 'num'), td(when(s.updated), 'nowrap'))))
        : el('p', { class: 'muted', text: 'No saga instances' + (f.state ? ' with state ' + f.state : '') + '.' }),
      o.more ? el('p', { class: 'muted', text: 'showing the first 200' }) : null);
    ready();
  }

  function tree(nodes) {
    const box = el('div', { class: 'tree' });
    for (const n of nodes) {
      box.append(el('div', { class: 'node ' + n.kind },
        el('span', { class: 'indent', text: '\u00a0'.repeat(n.depth * 4) }),
        el('span', { class: 't', text: '+' + (n.offset_us / 1000).toFixed(1) + ' ms' }), ' ',
        n.kind === 'command' ? '→ ' : '',
        el('span', { class: 'name' }, n.kind === 'event' ? link('#/events/' + enc(n.id), n.name) : n.name), ' ',
        el('span', { class: 'muted', text: '(' + (n.by || n.handler || '') + ')' })));
    }
    return box;
  }

  async function saga(id) {
    const o = await api('sagas/' + enc(id));
    const parts = [el('h1', {}, 'Saga instance ', el('code', { text: id }))];
    for (const s of o.instances) {
      const kv = el('div', { class: 'kv' });
      for (const k of ['type', 'status', 'result', 'version', 'created', 'updated'])
        kv.append(el('div', { text: k }), el('div', { text: String(s[k] || '–') }));
      kv.append(el('div', { text: 'correlation' }), el('div', {}, link('#/trace/' + enc(s.correlation_id), s.correlation_id)));
      const cmds = s.commands || [], tos = s.timeouts || [];
      parts.push(el('h2', { text: s.type }), kv, el('h2', { text: 'State' }), pretty(s.state),
        el('h2', { text: 'Commands' }),
        cmds.length ? table(['State', 'Name', { t: 'Attempts', num: true }, 'Data', 'Last error'],
          cmds.map(c => el('tr', {}, td(el('span', { class: 'badge ' + (c.state === 'sent' ? 'ok' : 'warn'), text: c.state })),
            td(c.name), td(num(c.attempts), 'num'), td(el('code', { text: JSON.stringify(c.data) })), td(c.last_error || ''))))
          : el('p', { class: 'muted', text: 'no commands' }),
        el('h2', { text: 'Timeouts' }),
        tos.length ? table(['Name', 'Deadline', 'Fired'], tos.map(t => el('tr', {}, td(t.name),
          td(new Date(t.deadline_us / 1000).toISOString()), td(t.fired ? 'yes' : 'pending'))))
          : el('p', { class: 'muted', text: 'no timeouts pending' }),
        el('h2', { text: 'History' }), s.history ? tree(s.history.nodes) : el('p', { class: 'muted', text: 'no flow recorded' }));
    }
    show('saga', parts);
    ready();
  }

  async function trace(id) {
    const input = el('input', { name: 'id', value: id || '', size: 40, placeholder: 'event id, correlation id or order id' });
    const form = el('form', { class: 'filters' }, el('label', {}, 'id', input), el('button', { type: 'submit', text: 'Trace' }));
    form.addEventListener('submit', e => { e.preventDefault(); location.hash = '#/trace/' + enc(input.value.trim()); });
    show('trace', el('h1', { text: 'Causal trace' }), form);
    if (!id) {
      view.append(el('p', { class: 'muted', text: 'Give an event id, a correlation id or a subject (an order id) to see its flow as a tree.' }));
      ready();
      return;
    }
    const t = await api('trace/' + enc(id));
    view.append(el('p', { class: 'muted' }, 'correlation ', el('code', { text: t.correlation }), ', ' + t.nodes.length + ' nodes'),
      tree(t.nodes));
    ready();
  }

  async function graph() {
    const g = await api('graph');
    show('graph', el('h1', { text: 'Flow graph' }),
      el('div', { class: 'legend' }, el('span', { class: 'l-source', text: 'publisher' }), el('span', { class: 'l-type', text: 'event type' }),
        el('span', { class: 'l-handler', text: 'handler' }), el('span', { class: 'l-saga', text: 'saga' }), el('span', { class: 'l-command', text: 'command' })),
      el('div', { class: 'graph-wrap' }, drawGraph(g.edges)));
    if (!g.edges.length) view.append(el('p', { class: 'muted', text: 'Nothing recorded yet.' }));
    ready();
  }

  // Layered drawing: kinds from the edges, layers by longest path over a
  // depth-first spanning of the graph (edges closing a cycle drawn back).
  function drawGraph(edges) {
    const nodes = new Map();
    const node = (name, kind) => {
      if (!nodes.has(name)) nodes.set(name, { name, kinds: new Set(), out: [], inn: [] });
      if (kind) nodes.get(name).kinds.add(kind);
      return nodes.get(name);
    };
    for (const e of edges) {
      const from = node(e.from), to = node(e.to);
      if (e.kind === 'handles') { from.kinds.add('type'); to.kinds.add('handler'); }
      if (e.kind === 'publishes') { from.kinds.add('source'); to.kinds.add('type'); }
      if (e.kind === 'sends') { from.kinds.add('saga'); to.kinds.add('command'); }
      if (e.kind === 'leads_to') { from.kinds.add('command'); to.kinds.add('type'); }
      from.out.push(e); to.inn.push(e);
    }
    const kindOf = n => n.kinds.has('type') ? 'type' : n.kinds.has('saga') ? 'saga' : n.kinds.has('command') ? 'command'
      : n.kinds.has('handler') ? 'handler' : 'source';
    const fill = { type: '#dbeafe', handler: '#dcfce7', saga: '#ede9fe', command: '#fae8ff', source: '#fef3c7' };
    // depth-first from the roots: back edges are the ones to a node on the stack
    const state = new Map(), back = new Set();
    const visit = n => {
      state.set(n.name, 1);
      for (const e of n.out) {
        const t = nodes.get(e.to);
        if (state.get(t.name) === 1) back.add(e);
        else if (!state.has(t.name)) visit(t);
      }
      state.set(n.name, 2);
    };
    const roots = [...nodes.values()].filter(n => !n.inn.length).sort((a, b) => a.name.localeCompare(b.name));
    for (const r of roots) if (!state.has(r.name)) visit(r);
    for (const n of [...nodes.values()].sort((a, b) => a.name.localeCompare(b.name))) if (!state.has(n.name)) visit(n);
    const layer = new Map();
    const depth = n => {
      if (layer.has(n.name)) return layer.get(n.name);
      layer.set(n.name, 0);
      let d = 0;
      for (const e of n.inn) if (!back.has(e)) d = Math.max(d, depth(nodes.get(e.from)) + 1);
      layer.set(n.name, d);
      return d;
    };
    for (const n of nodes.values()) depth(n);
    const columns = [];
    for (const n of nodes.values()) (columns[layer.get(n.name)] = columns[layer.get(n.name)] || []).push(n);
    const pos = new Map();
    const GAP = 70, RH = 38, PADX = 20, PADY = 20, NH = 26;
    columns.forEach((col, ci) => {
      if (!col) return;
      // order by the mean row of the predecessors (fewer crossings)
      col.forEach(n => {
        const ys = n.inn.filter(e => pos.has(e.from)).map(e => pos.get(e.from).row);
        n.bary = ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 1e9;
      });
      col.sort((a, b) => a.bary - b.bary || a.name.localeCompare(b.name));
      col.forEach((n, ri) => pos.set(n.name, { col: ci, row: ri }));
    });
    const rows = Math.max(1, ...columns.map(c => (c ? c.length : 0)));
    const widthOf = name => 18 + name.length * 6.8;
    // each column as wide as its widest node, plus room for the edges
    const colX = [];
    let x = PADX;
    columns.forEach((col, ci) => {
      colX[ci] = x;
      x += Math.max(60, ...(col || []).map(n => widthOf(n.name))) + GAP;
    });
    const W = x - GAP + PADX, H = PADY * 2 + rows * RH + 30;
    const s = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'font-family': 'system-ui, sans-serif', 'font-size': 12 });
    s.append(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M0 0 L10 5 L0 10 z', fill: '#94a3b8' }))));
    const box = name => {
      const p = pos.get(name);
      return { x: colX[p.col], y: PADY + p.row * RH, w: widthOf(name), h: NH };
    };
    const edgeLayer = svg('g'), nodeLayer = svg('g');
    for (const e of edges) {
      const a = box(e.from), b = box(e.to);
      const x1 = a.x + a.w, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
      let d;
      if (x2 > x1) {
        const mx = (x1 + x2) / 2;
        d = `M${x1} ${y1} C${mx} ${y1} ${mx} ${y2} ${x2} ${y2}`;
      } else { // back to an earlier column: loop under the rows
        const yb = H - 14;
        d = `M${x1} ${y1} C${x1 + 40} ${yb} ${x2 - 40} ${yb} ${x2} ${y2}`;
      }
      const dash = e.kind === 'handles' ? '4 3' : null;
      const path = svg('path', { d, fill: 'none', stroke: '#94a3b8', 'stroke-width': 1.4, 'marker-end': 'url(#arrow)' });
      if (dash) path.setAttribute('stroke-dasharray', dash);
      path.append(svg('title', { text: `${e.from} ${e.kind.replace('_', ' ')} ${e.to}` + (e.count ? ` (${e.count})` : '') }));
      edgeLayer.append(path);
      if (e.count && x2 > x1)
        edgeLayer.append(svg('text', { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 3, 'text-anchor': 'middle', fill: '#64748b', 'font-size': 10, text: e.count }));
    }
    for (const n of nodes.values()) {
      const b = box(n.name), k = kindOf(n);
      const g = svg('g', { class: 'gnode', 'data-name': n.name, 'data-kind': k });
      g.append(svg('rect', { x: b.x, y: b.y, width: b.w, height: b.h, rx: k === 'type' ? 13 : 5, fill: fill[k], stroke: '#94a3b8' }));
      g.append(svg('text', { x: b.x + 8, y: b.y + 17, fill: '#1f2933', text: n.name }));
      g.append(svg('title', { text: k + ': ' + n.name }));
      nodeLayer.append(g);
    }
    s.append(edgeLayer, nodeLayer);
    return s;
  }

  // ---- routing -----------------------------------------------------------------------

  async function route() {
    for (const t of timers) clearInterval(t);
    timers = [];
    for (const a of aborts) a.abort();
    aborts = [];
    const h = location.hash.replace(/^#\/?/, '');
    const qi = h.indexOf('?');
    const path = qi >= 0 ? h.slice(0, qi) : h;
    const q = new URLSearchParams(qi >= 0 ? h.slice(qi + 1) : '');
    const slash = path.indexOf('/');
    const name = slash >= 0 ? path.slice(0, slash) : path;
    const arg = slash >= 0 ? decodeURIComponent(path.slice(slash + 1)) : '';
    try {
      switch (name) {
        case '': case 'overview': await overview(); break;
        case 'streams': await (arg ? stream(arg, q) : streams(q)); break;
        case 'events': await eventView(arg); break;
        case 'tail': tail(q); break;
        case 'subscriptions': await subscriptions(); break;
        case 'deadletters': await (arg ? deadLetter(arg) : deadLetters(q)); break;
        case 'sagas': await (arg ? saga(arg) : sagas(q)); break;
        case 'trace': await trace(arg); break;
        case 'graph': await graph(); break;
        default: show('notfound', el('h1', { text: 'Not found' }), el('p', { text: 'No view called ' + name + '.' })); ready();
      }
    } catch (e) {
      show(name || 'overview', el('h1', { text: 'Could not load this view' }));
      failed(e);
    }
  }
  window.addEventListener('hashchange', route);
  refreshSession().then(route);
})();
