// runstate inspector page. Plain ES module, no build step and no network: the feed is SSE from
// `feed` (read with fetch, so it can carry the security key), the chart is `graph.json` laid out
// by elkjs (`vendor/elk.bundled.js`, which defines ELK).
/* global ELK */

const SVG_NS = 'http://www.w3.org/2000/svg';
// Any other status is active: `pending`, `streaming`, and `paused` (waiting for a person to confirm
// tool calls, it can still be cancelled).
const FINAL = new Set(['completed', 'cancelled', 'failed']);
const isActive = (status) => !FINAL.has(status);
const $ = (id) => document.getElementById(id);

const state = {
  /** run id → { summary, element } */
  runs: new Map(),
  selected: runFromHash(),
  cancelUrl: '../agents/{agent_id}/runs/{run_id}/cancel',
  /** The AbortController of the live feed. */
  feed: null,
  chart: null,
  /** The selected run's log and content, as the feed sent them. */
  detail: null,
  /** Edges taken by the selected run's last state change. */
  taken: new Set(),
  /** When the feed was lost (not live), or null while it is live. */
  lostAt: null,
  /** The selected run's last change of state value, `{ before, after }`, or null. */
  transition: null,
  /** The run whose cancel is under way, or null. */
  cancelling: null,
  /** `graph.json` was refused for want of a key: load it again once one is given. */
  chartLocked: false,
};

// ---------------------------------------------------------------------------------------------
// Security key: asked for on a 401, kept in sessionStorage (this tab only), sent as a header.
// Never in a URL: it would end up in logs and history.

const KEY_STORAGE = 'runstate.inspector.securityKey';

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null; // storage disabled: the key is asked for again on each refusal
  }
}

/** `fetch` relative to the page, with `Authorization: Bearer <key>` when a key was given. */
async function api(path, init = {}) {
  const key = storedKey();
  const headers = new Headers(init.headers);
  if (key) headers.set('authorization', `Bearer ${key}`);
  const response = await fetch(new URL(path, location.href), { cache: 'no-store', ...init, headers });
  if (response.status === 401) askForKey(key);
  return response;
}

/** Shows the key form; `refused` is the key the server just refused, if any. */
function askForKey(refused) {
  if (refused && storedKey() === refused) {
    try {
      sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      // nothing stored
    }
  }
  const form = $('auth');
  const error = $('auth-error');
  error.textContent = refused ? 'The server refused this key.' : '';
  error.hidden = !refused;
  if (form.hidden) {
    form.hidden = false;
    $('auth-key').focus();
  }
}

function onKeySubmitted(event) {
  event.preventDefault();
  const key = $('auth-key').value.trim();
  const error = $('auth-error');
  // A header value carries printable ASCII only (fetch would throw on anything else).
  if (!/^[\x20-\x7e]+$/.test(key)) {
    error.textContent = 'A key is printable ASCII: letters, digits, punctuation.';
    error.hidden = false;
    return;
  }
  try {
    sessionStorage.setItem(KEY_STORAGE, key);
  } catch {
    error.textContent = 'This browser does not keep the key (sessionStorage is disabled).';
    error.hidden = false;
    return;
  }
  $('auth-key').value = '';
  $('auth').hidden = true;
  connect();
  if (state.chartLocked) startChart();
}

// ---------------------------------------------------------------------------------------------
// Feed: Server-Sent Events read with fetch (EventSource cannot send an Authorization header).

const FEED_HANDLERS = {
  snapshot: onSnapshot,
  runs: onRuns,
  progress: onProgress,
  removed: onRemoved,
  detail: onDetail,
  append: onAppend,
};
const MAX_RETRY_MS = 30_000;

function connect() {
  state.feed?.abort();
  const feed = new AbortController();
  state.feed = feed;
  void follow(feed).catch((error) => {
    if (feed.signal.aborted) return;
    setConnection('closed', 'disconnected');
    throw error;
  });
}

/**
 * Reads the feed until `feed` is aborted, reconnecting with backoff: the server's `retry` at first,
 * doubled on each failure up to 30 s, back to the start once a connection delivers. Every
 * connection begins with a fresh snapshot, so nothing is lost in between.
 */
async function follow(feed) {
  const path = state.selected ? `feed?run=${encodeURIComponent(state.selected)}` : 'feed';
  const stream = { retry: 2000, lastEventId: '' };
  let failures = 0;
  setConnection('connecting', 'connecting…');
  while (!feed.signal.aborted) {
    let delivered = false;
    try {
      const headers = { accept: 'text/event-stream' };
      if (stream.lastEventId) headers['last-event-id'] = stream.lastEventId;
      const response = await api(path, { headers, signal: feed.signal });
      if (response.status === 401) {
        setConnection('locked', 'security key needed');
        return; // the key form calls connect() again
      }
      if (!response.ok || !response.body) throw new Error(`feed: ${response.status}`);
      await readEvents(response.body, stream, (type, data) => {
        if (feed !== state.feed) return;
        delivered = true;
        try {
          FEED_HANDLERS[type]?.(JSON.parse(data));
        } catch (error) {
          reportError(error); // a bug in the page: report it, as an EventSource listener would, and read on
        }
      });
    } catch {
      // The connection failed or ended: try again below, unless this feed was replaced.
    }
    if (feed.signal.aborted) return;
    failures = delivered ? 0 : failures + 1;
    setConnection('reconnecting', 'reconnecting…');
    await pause(Math.min(stream.retry * 2 ** failures, MAX_RETRY_MS), feed.signal);
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

/**
 * Parses an SSE body as the HTML spec's EventSource does: `event`, `data` (lines joined), `id` and
 * `retry` fields, `:` comments; a blank line ends a frame.
 */
async function readEvents(body, stream, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let type = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === '') {
        if (data.length > 0) dispatch(type || 'message', data.join('\n'));
        type = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let text = colon === -1 ? '' : line.slice(colon + 1);
      if (text.startsWith(' ')) text = text.slice(1);
      if (field === 'event') type = text;
      else if (field === 'data') data.push(text);
      else if (field === 'id' && !text.includes('\0')) stream.lastEventId = text;
      else if (field === 'retry' && /^\d+$/.test(text)) stream.retry = Number(text);
    }
  }
}

function setConnection(kind, text) {
  const element = $('connection');
  element.dataset.state = kind;
  element.textContent = text;
  // Out of touch: what is shown is how things were then (a duration stops, a cancel waits).
  const live = kind === 'live';
  if (live) state.lostAt = null;
  else state.lostAt ??= Date.now();
  const summary = selectedSummary();
  if (summary) {
    renderCancel(summary);
    renderDuration();
  }
}

/**
 * The empty list says how to start a run on this server: with the AgentOS routes (the page cancels
 * through them), `POST /agents/:agent_id/runs` under the same prefix; without, from code.
 */
function showHowToStart(cancelUrl) {
  const how = $('runs-empty-how');
  const agentos = /^(.*)agents\/\{agent_id\}\/runs\//.exec(cancelUrl);
  if (!agentos) {
    how.replaceChildren('from your code, with ', code('agent.run(…)'));
    return;
  }
  const runs = `${new URL(`${agentos[1]}agents/`, location.href).pathname}:agent_id/runs`;
  how.replaceChildren('for example ', code(`POST ${runs}`));
}

function code(text) {
  const element = document.createElement('code');
  element.textContent = text;
  return element;
}

function onSnapshot(message) {
  setConnection('live', 'live');
  state.cancelUrl = message.cancel_url;
  showHowToStart(message.cancel_url);
  const seen = new Set();
  for (const summary of message.runs) {
    upsert(summary);
    seen.add(summary.run_id);
  }
  for (const runId of [...state.runs.keys()]) if (!seen.has(runId)) removeRun(runId);
  afterRunsChanged();
}

function onRuns(message) {
  for (const summary of message.runs) upsert(summary);
  afterRunsChanged();
}

/** Chunk counts of streaming runs: the summary is otherwise unchanged. */
function onProgress(message) {
  for (const progress of message.runs) {
    const known = state.runs.get(progress.run_id);
    if (!known) continue;
    known.summary = { ...known.summary, chunks: progress.chunks, content_length: progress.content_length };
    renderRunItem(known.element, known.summary);
  }
  renderDetail();
}

function onRemoved(message) {
  for (const runId of message.run_ids) {
    const known = state.runs.get(runId);
    if (!known) continue;
    if (runId !== state.selected) {
      removeRun(runId);
      continue;
    }
    // The run being looked at stays on screen until another is chosen, marked as no longer followed:
    // what it shows is how it was then (its clock stops, as when the feed is lost).
    known.gone = true;
    known.goneAt = Date.now();
    known.element.classList.add('gone');
    setNotice('This run is no longer followed here: another instance took it, or it was forgotten.');
    $('log').querySelector('.live')?.remove();
    renderDuration();
  }
  afterRunsChanged();
}

function onDetail(message) {
  if (message.run_id !== state.selected) return;
  state.detail = { runId: message.run_id, contentLength: 0, loggedChunks: 0, lastEvent: null, lastState: null };
  const content = $('content');
  content.replaceChildren(document.createTextNode(''));
  $('log').replaceChildren();
  appendContent(message.content, 0);
  appendLog(message.log);
  renderDetail();
}

function onAppend(message) {
  if (!state.detail || message.run_id !== state.detail.runId) return;
  if (message.offset > state.detail.contentLength) {
    connect(); // a gap: start over from a fresh detail
    return;
  }
  appendContent(message.content, message.offset);
  appendLog(message.log);
  renderDetail();
}

// ---------------------------------------------------------------------------------------------
// Run list

function upsert(summary) {
  const known = state.runs.get(summary.run_id);
  if (!known && state.detail?.runId === summary.run_id) fillLogTimes(summary.created_at);
  if (known) {
    const previous = known.summary;
    known.summary = summary;
    renderRunItem(known.element, summary);
    // A followed run's transitions come from its log, which has every change of state: a summary
    // is the state at the end of a turn, and several changes in one turn (a quick tool round) would
    // show as one with no transition of the chart to light.
    const logged = state.detail?.runId === summary.run_id;
    if (summary.run_id === state.selected && !logged && valueKey(previous.value) !== valueKey(summary.value)) {
      // Kept: the log line of the event that caused it may come after (see appendLog).
      state.transition = { was: activeKeys(previous.value), is: activeKeys(summary.value) };
      state.taken = takenEdges(state.transition.was, state.transition.is);
    }
    return;
  }
  const element = document.createElement('li');
  element.className = 'run';
  element.setAttribute('role', 'option');
  // One tab stop for the whole list (see moveInList): the item chosen or reached with the arrows.
  element.tabIndex = -1;
  element.dataset.runId = summary.run_id;
  element.innerHTML =
    '<div class="run-top"><span class="run-name"></span><span class="run-count"></span></div>' +
    '<div class="run-sub"><span class="pill"></span><code></code><span class="run-time"></span></div>';
  element.addEventListener('click', () => select(summary.run_id));
  renderRunItem(element, summary);
  $('runs').prepend(element);
  state.runs.set(summary.run_id, { summary, element });
}

function renderRunItem(element, summary) {
  const pill = element.querySelector('.pill');
  pill.dataset.status = summary.status;
  pill.textContent = summary.status;
  element.querySelector('.run-name').textContent = summary.agent_name ?? 'run';
  element.querySelector('.run-name').title = summary.run_input ?? '';
  element.querySelector('code').textContent = summary.run_id.slice(0, 8);
  element.querySelector('.run-time').textContent = new Date(summary.created_at).toLocaleTimeString();
  element.querySelector('.run-count').textContent = `${summary.chunks} chunk${summary.chunks === 1 ? '' : 's'}`;
  markSelected(element, summary.run_id === state.selected);
}

/** Shows a run item chosen or not, to the eye (`selected`) and to assistive technology. */
function markSelected(element, selected) {
  element.classList.toggle('selected', selected);
  element.setAttribute('aria-selected', String(selected));
}

/**
 * Makes `element` the list's one tab stop (roving tabindex): Tab reaches the list once, not every
 * run of it, and lands where the arrows last were.
 */
function setTabStop(element) {
  for (const item of $('runs').children) item.tabIndex = item === element ? 0 : -1;
}

/** A list with runs keeps one tab stop: the chosen run's, else the newest's. */
function keepTabStop() {
  const list = $('runs');
  if (list.querySelector('li[tabindex="0"]')) return;
  const chosen = state.runs.get(state.selected)?.element ?? list.firstElementChild;
  if (chosen) setTabStop(chosen);
}

/** Keys of the run list (a listbox): Up, Down, Home and End move among runs; Enter and Space choose. */
function moveInList(event) {
  const item = event.target.closest('li.run');
  if (!item) return;
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    select(item.dataset.runId);
    return;
  }
  const items = [...$('runs').children];
  const at = items.indexOf(item);
  const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[event.key];
  if (to === undefined) return;
  event.preventDefault(); // no scrolling of the page
  const next = items[Math.max(0, Math.min(items.length - 1, to))];
  setTabStop(next);
  next.focus();
}

function removeRun(runId) {
  state.runs.get(runId)?.element.remove();
  state.runs.delete(runId);
}

function afterRunsChanged() {
  $('runs-empty').hidden = state.runs.size > 0;
  keepTabStop();
  let active = 0;
  let followed = 0;
  for (const { summary, gone } of state.runs.values()) {
    if (gone) continue;
    followed++;
    if (isActive(summary.status)) active++;
  }
  $('counts').textContent = `${active} active · ${followed - active} finished`;
  // Nothing chosen yet, or a run the server does not know (a stale link, a restart): the newest.
  if ((!state.selected || !state.runs.has(state.selected)) && state.runs.size > 0) {
    // Nothing chosen yet: follow the newest run.
    select($('runs').firstElementChild.dataset.runId);
    return;
  }
  renderDetail();
}

function select(runId) {
  if (runId === state.selected && state.detail?.runId === runId) return;
  // A run no longer followed was kept on screen only while it was the one looked at.
  for (const [id, known] of state.runs) if (known.gone && id !== runId) removeRun(id);
  state.selected = runId;
  state.detail = null;
  state.taken = new Set();
  state.transition = null;
  history.replaceState(null, '', `#run=${encodeURIComponent(runId)}`);
  for (const { summary, element } of state.runs.values()) markSelected(element, summary.run_id === runId);
  const chosen = state.runs.get(runId);
  if (chosen) setTabStop(chosen.element);
  $('content').replaceChildren();
  $('log').replaceChildren();
  setNotice('');
  connect();
  renderDetail();
}

/** The run a link names (`#run=<id>`); none for a fragment that is not valid percent-encoding. */
function runFromHash() {
  const match = /^#run=(.+)$/.exec(location.hash);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    // A hand-made link (`#run=%E0`): the page shows every run, as with no fragment.
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Selected run

function selectedSummary() {
  return state.selected ? state.runs.get(state.selected)?.summary : undefined;
}

function renderDetail() {
  const summary = selectedSummary();
  $('run-header').hidden = !summary;
  highlightChart(summary);
  if (!summary) return;
  $('run-title').textContent = summary.agent_name ?? 'Run';
  const status = $('run-status');
  status.dataset.status = summary.status;
  status.textContent = summary.status;
  $('run-state').textContent = valueText(summary.value);
  $('run-id').textContent = summary.run_id;
  $('run-model').textContent = summary.model ?? '–';
  $('run-chunks').textContent = String(summary.chunks);
  $('run-length').textContent = summary.content_length.toLocaleString();
  $('run-attempt').textContent = String(summary.attempt);
  $('run-input').textContent = summary.run_input ?? '';
  $('run-input').hidden = !summary.run_input;
  $('content-hint').textContent = `${summary.chunks} chunks · ${summary.content_length.toLocaleString()} characters`;
  renderDuration();
  renderCancel(summary);
  renderLiveChunks(summary);
}

function renderDuration() {
  const summary = selectedSummary();
  if (!summary) return;
  const end = summary.finished_at ?? state.runs.get(summary.run_id)?.goneAt ?? state.lostAt ?? Date.now();
  $('run-duration').textContent = `${(Math.max(0, end - summary.created_at) / 1000).toFixed(1)} s`;
}

function renderCancel(summary) {
  const button = $('cancel');
  const needsAgent = state.cancelUrl.includes('{agent_id}');
  const active = isActive(summary.status) && !state.runs.get(summary.run_id)?.gone;
  const offline = state.lostAt !== null;
  button.disabled =
    offline || state.cancelling === summary.run_id || !active || (needsAgent && !summary.agent_id);
  button.title = offline
    ? 'Not connected to the server: the run may have ended meanwhile'
    : active && needsAgent && !summary.agent_id
      ? 'The run’s agent is unknown: attach the orchestrator'
      : '';
}

async function cancelSelected() {
  const summary = selectedSummary();
  if (!summary) return;
  const path = state.cancelUrl
    .replace('{agent_id}', encodeURIComponent(summary.agent_id ?? ''))
    .replace('{run_id}', encodeURIComponent(summary.run_id));
  // The run the cancel is for: another may be selected by the time the answer comes.
  const runId = summary.run_id;
  const tell = (text, kind) => {
    if (selectedSummary()?.run_id === runId) setNotice(text, kind);
  };
  state.cancelling = runId;
  renderCancel(summary);
  setNotice('Cancelling…');
  try {
    const response = await api(path, { method: 'POST', headers: { accept: 'application/json' } });
    const body = await response.json().catch(() => ({}));
    if (response.ok) tell(`Cancel accepted: the run is ${body.status ?? 'cancelled'}.`);
    else if (response.status === 401) tell('Cancel refused (401): enter the security key, then try again.', 'error');
    else tell(`Cancel refused (${response.status}): ${body.detail ?? response.statusText}`, 'error');
  } catch (error) {
    tell(`Cancel failed: ${error.message}`, 'error');
  } finally {
    state.cancelling = null;
    const current = selectedSummary();
    if (current) renderCancel(current);
  }
}

function setNotice(text, kind = 'info') {
  const notice = $('notice');
  notice.textContent = text;
  notice.dataset.kind = kind;
  notice.hidden = text === '';
}

function appendContent(text, offset) {
  const detail = state.detail;
  const fresh = text.slice(detail.contentLength - offset);
  if (fresh === '') return;
  const pre = $('content');
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  pre.firstChild.appendData(fresh);
  detail.contentLength += fresh.length;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function appendLog(entries) {
  const detail = state.detail;
  const list = $('log');
  const created = state.runs.get(detail.runId)?.summary.created_at;
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  list.querySelector('.live')?.remove();
  for (const entry of entries) {
    // (No time rather than a wrong one before the run's summary came: see logRow and fillLogTimes.)
    const row = logRow(entry.kind, entry.text, entry.detail, created === undefined ? null : entry.at - created);
    row.dataset.at = String(entry.at);
    list.append(row);
    if (entry.kind === 'chunks') detail.loggedChunks += Number(entry.text.replace(/\D+/g, '')) || 0;
    if (entry.kind === 'event') detail.lastEvent = entry.text;
    if (entry.kind === 'state') {
      if (detail.lastState !== null && detail.lastState !== entry.text) {
        state.transition = { was: keysOfText(detail.lastState), is: keysOfText(entry.text) };
      }
      detail.lastState = entry.text;
    }
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
  // The event that explains the last change of state may come after the change: light it now.
  const transition = state.transition;
  if (transition && entries.some((entry) => entry.kind === 'event' || entry.kind === 'state')) {
    state.taken = takenEdges(transition.was, transition.is);
    highlightChart(selectedSummary());
  }
}

/** The times of the selected run's log lines that came before its summary (it tells when it began). */
function fillLogTimes(created) {
  for (const row of $('log').querySelectorAll('li[data-at]')) {
    const time = row.querySelector('.t');
    if (time.textContent === '') time.textContent = `+${((Number(row.dataset.at) - created) / 1000).toFixed(3)}`;
  }
}

function logRow(kind, text, detail, ms) {
  const row = document.createElement('li');
  row.dataset.kind = kind;
  row.innerHTML = '<span class="t"></span><span class="kind"></span><span class="text"></span>';
  row.querySelector('.t').textContent = ms === null ? '' : `+${(ms / 1000).toFixed(3)}`;
  row.querySelector('.kind').textContent = kind;
  const body = row.querySelector('.text');
  body.textContent = text;
  if (detail) {
    const extra = document.createElement('span');
    extra.className = 'detail';
    extra.textContent = detail;
    body.append(extra);
  }
  return row;
}

/** The chunks accepted since the last log line, counted live (the log writes them when something else happens). */
function renderLiveChunks(summary) {
  const detail = state.detail;
  if (!detail || detail.runId !== summary.run_id) return;
  const list = $('log');
  let live = list.querySelector('.live');
  const pending = summary.chunks - detail.loggedChunks;
  if (pending <= 0 || !isActive(summary.status) || state.runs.get(summary.run_id)?.gone) {
    live?.remove();
    return;
  }
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  if (!live) {
    live = logRow('chunks', '', undefined, null);
    live.classList.add('live');
    list.append(live);
  }
  live.querySelector('.text').textContent = `RunContent ×${pending} …`;
  // A log that followed its last line goes on following it (`appendLog` asks the same).
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------------------------------------
// Chart

async function loadChart() {
  // Served without a token by runstate's server; a proxy in front may still want one.
  const response = await api('graph.json');
  state.chartLocked = response.status === 401;
  if (state.chartLocked) return;
  if (!response.ok) throw new Error(`graph.json: ${response.status}`);
  const graph = await response.json();
  const measure = createMeasurer();
  const elkGraph = toElkGraph(graph, measure);
  measure.dispose();
  const layout = await new ELK().layout(elkGraph);
  state.chart = renderChart(graph, layout);
  // A run selected before the chart was laid out (the one the page opened on) has its transition
  // from its log already: its edges can be found only now.
  if (state.transition) state.taken = takenEdges(state.transition.was, state.transition.is);
  highlightChart(selectedSummary());
}

/** Measures text with the chart's own CSS, so boxes fit their labels in whatever font is installed. */
function createMeasurer() {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'measure');
  svg.setAttribute('width', '0');
  svg.setAttribute('height', '0');
  const holder = document.createElement('div');
  holder.className = 'chart';
  holder.style.position = 'absolute';
  holder.style.visibility = 'hidden';
  holder.append(svg);
  document.body.append(holder);
  const measure = (text, className) => {
    const node = svgElement('text', { class: className });
    node.textContent = text;
    svg.append(node);
    const box = node.getBBox();
    node.remove();
    return { width: Math.ceil(box.width), height: Math.ceil(box.height) };
  };
  measure.dispose = () => holder.remove();
  return measure;
}

function edgeText(edge) {
  let text = edge.label;
  if (edge.guard) text += ` [${edge.guard}]`;
  if (edge.targetless && edge.actions.length > 0) text += ` / ${edge.actions.join(', ')}`;
  return text;
}

/** Height of one line of a state's own transitions, written inside it. */
const INTERNAL_LINE = 15;

/**
 * Transitions without a target (`after idleTimeout / raise TIMEOUT`) change no state: they are
 * written inside their state, as lines under its name, rather than drawn as loops (elkjs routes a
 * loop around its whole node, which over a compound state looked like a second frame).
 */
function internalTransitions(graph) {
  const byNode = new Map();
  for (const edge of graph.edges) {
    if (!edge.targetless) continue;
    const lines = byNode.get(edge.source) ?? [];
    lines.push(edgeText(edge));
    byNode.set(edge.source, lines);
  }
  return byNode;
}

function toElkGraph(graph, measure) {
  const edges = [];
  const internal = internalTransitions(graph);
  const toNode = (node, isRoot) => {
    const label = measure(node.key, 'node-label');
    const note = node.invoke.length > 0 ? `invoke ${node.invoke.join(', ')}` : '';
    const noteSize = note ? measure(note, 'node-note') : { width: 0, height: 0 };
    const lines = internal.get(node.id) ?? [];
    const linesWidth = Math.max(0, ...lines.map((line) => measure(line, 'node-internal').width));
    const linesHeight = lines.length * INTERNAL_LINE;
    if (node.children.length === 0) {
      return {
        id: node.id,
        width: Math.max(96, Math.max(label.width, noteSize.width, linesWidth) + 36),
        height: (note ? 50 : 38) + linesHeight + (lines.length > 0 ? 4 : 0),
      };
    }
    const children = node.children.map((child) => toNode(child, false));
    if (node.initial) {
      children.unshift({ id: `${node.id}#initial`, width: 12, height: 12 });
      edges.push({ id: `${node.id}#initial-edge`, sources: [`${node.id}#initial`], targets: [node.initial] });
    }
    const headerWidth = Math.max(label.width + (note ? noteSize.width + 12 : 0), linesWidth) + 28;
    const top = (isRoot ? 40 : 34) + linesHeight;
    return {
      id: node.id,
      labelWidth: label.width,
      children,
      layoutOptions: {
        'elk.padding': isRoot ? `[top=${top},left=20,bottom=20,right=20]` : `[top=${top},left=16,bottom=16,right=16]`,
        'elk.nodeSize.constraints': 'MINIMUM_SIZE',
        'elk.nodeSize.minimum': `(${headerWidth},${60 + linesHeight})`,
      },
    };
  };
  const root = toNode(graph.root, true);
  for (const edge of graph.edges) {
    if (edge.targetless) continue;
    const size = measure(edgeText(edge), 'edge-label-text');
    edges.push({
      id: edge.id,
      sources: [edge.source],
      targets: [edge.target],
      labels: [{ id: `${edge.id}#label`, text: edgeText(edge), width: size.width + 8, height: size.height + 2 }],
    });
  }
  return {
    id: '#chart',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'DOWN',
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.edgeRouting': 'ORTHOGONAL',
      'elk.layered.spacing.nodeNodeBetweenLayers': '36',
      'elk.layered.spacing.edgeNodeBetweenLayers': '16',
      'elk.spacing.nodeNode': '24',
      'elk.spacing.edgeNode': '14',
      'elk.spacing.edgeEdge': '10',
      'elk.spacing.edgeLabel': '3',
      'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
      'elk.edgeLabels.placement': 'CENTER',
      'elk.json.shapeCoords': 'ROOT',
      'elk.json.edgeCoords': 'ROOT',
    },
    children: [root],
    edges,
  };
}

function svgElement(name, attributes = {}) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

function renderChart(graph, layout) {
  const width = Math.ceil(layout.width);
  const height = Math.ceil(layout.height);
  const svg = svgElement('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': `State chart of the ${graph.id} machine`,
  });
  const defs = svgElement('defs');
  for (const [id, className] of [
    ['arrow', 'arrow'],
    ['arrow-taken', 'arrow arrow-taken'],
  ]) {
    const marker = svgElement('marker', {
      id,
      viewBox: '0 0 10 10',
      refX: 9,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: 'auto-start-reverse',
    });
    marker.append(svgElement('path', { d: 'M0,0 L10,5 L0,10 z', class: className }));
    defs.append(marker);
  }
  svg.append(defs);
  const containers = svgElement('g', { class: 'containers' });
  const edgeLayer = svgElement('g', { class: 'edges' });
  const leaves = svgElement('g', { class: 'leaves' });
  const labels = svgElement('g', { class: 'edge-labels' });
  svg.append(containers, edgeLayer, leaves, labels);

  const byId = new Map();
  const index = (node) => {
    byId.set(node.id, node);
    node.children.forEach(index);
  };
  index(graph.root);

  const internal = internalTransitions(graph);
  const nodes = new Map();
  const drawNode = (box) => {
    if (box.id.endsWith('#initial')) {
      leaves.append(svgElement('circle', { class: 'initial', cx: box.x + 6, cy: box.y + 6, r: 5.5 }));
      return;
    }
    const node = byId.get(box.id);
    if (!node) return;
    const compound = node.children.length > 0;
    const isRoot = node.path.length === 0;
    const classes = ['node', compound ? 'compound' : 'leaf'];
    if (isRoot) classes.push('root');
    if (node.type === 'final') classes.push('final');
    const group = svgElement('g', { class: classes.join(' '), 'data-path': node.path.join('.'), 'data-id': node.id });
    group.append(
      svgElement('rect', {
        x: box.x,
        y: box.y,
        width: box.width,
        height: box.height,
        rx: compound ? 12 : 9,
      }),
    );
    if (node.type === 'final') {
      group.append(
        svgElement('rect', {
          class: 'final-ring',
          x: box.x + 3.5,
          y: box.y + 3.5,
          width: box.width - 7,
          height: box.height - 7,
          rx: 6,
        }),
      );
    }
    const note = node.invoke.length > 0 ? `invoke ${node.invoke.join(', ')}` : '';
    const lines = internal.get(node.id) ?? [];
    // Under the name (and the note of a leaf), one line each.
    const writeLines = (x, y, anchor) => {
      lines.forEach((line, i) => {
        const text = svgElement('text', {
          class: 'node-internal',
          x,
          y: y + i * INTERNAL_LINE,
          'text-anchor': anchor,
          'dominant-baseline': 'central',
        });
        text.textContent = line;
        group.append(text);
      });
    };
    if (compound) {
      writeLines(box.x + 14, box.y + 21 + INTERNAL_LINE + 2, 'start');
      const label = svgElement('text', { class: 'node-label', x: box.x + 14, y: box.y + 21 });
      label.textContent = isRoot ? `${node.key} machine` : node.key;
      group.append(label);
      if (note) {
        const x = box.x + 14 + (box.labelWidth ?? 0) + 10;
        const noteText = svgElement('text', { class: 'node-note', x, y: box.y + 21 });
        noteText.textContent = note;
        group.append(noteText);
      }
      containers.append(group);
    } else {
      const linesHeight = lines.length > 0 ? lines.length * INTERNAL_LINE + 4 : 0;
      const middle = box.y + (box.height - linesHeight) / 2 + (note ? -6 : 0);
      writeLines(box.x + box.width / 2, middle + (note ? 15 : 0) + INTERNAL_LINE + 2, 'middle');
      const label = svgElement('text', {
        class: 'node-label',
        x: box.x + box.width / 2,
        y: middle,
        'text-anchor': 'middle',
        'dominant-baseline': 'central',
      });
      label.textContent = node.key;
      group.append(label);
      if (note) {
        const noteText = svgElement('text', {
          class: 'node-note',
          x: box.x + box.width / 2,
          y: middle + 15,
          'text-anchor': 'middle',
          'dominant-baseline': 'central',
        });
        noteText.textContent = note;
        group.append(noteText);
      }
      leaves.append(group);
    }
    nodes.set(node.path.join('.'), group);
    for (const child of box.children ?? []) drawNode(child);
  };
  for (const child of layout.children ?? []) drawNode(child);

  const graphEdges = new Map(graph.edges.map((edge) => [edge.id, edge]));
  const edges = [];
  for (const laid of layout.edges ?? []) {
    const edge = graphEdges.get(laid.id);
    const classes = ['edge'];
    if (!edge) classes.push('initial-edge');
    const group = svgElement('g', { class: classes.join(' '), 'data-edge': laid.id });
    for (const section of laid.sections ?? []) {
      const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint];
      group.append(svgElement('path', { d: roundedPath(points, 6), 'marker-end': 'url(#arrow)' }));
    }
    edgeLayer.append(group);
    let labelGroup = null;
    for (const label of laid.labels ?? []) {
      labelGroup = svgElement('g', { class: 'edge-label', 'data-edge': laid.id });
      labelGroup.append(
        svgElement('rect', { x: label.x, y: label.y, width: label.width, height: label.height, rx: 3 }),
      );
      const text = svgElement('text', {
        class: 'edge-label-text',
        x: label.x + label.width / 2,
        y: label.y + label.height / 2,
        'text-anchor': 'middle',
        'dominant-baseline': 'central',
      });
      text.textContent = label.text;
      labelGroup.append(text);
      labels.append(labelGroup);
    }
    if (edge) edges.push({ edge, group, labelGroup });
  }

  const pathOf = new Map([...byId.values()].map((node) => [node.id, node.path.join('.')]));
  $('chart').replaceChildren(svg);
  // Every transition, drawn or written inside its state (the targetless ones).
  return { nodes, edges, pathOf, transitions: graph.edges };
}

/** A polyline with rounded corners. */
function roundedPath(points, radius) {
  const toward = (from, to, distance) => {
    const length = Math.hypot(to.x - from.x, to.y - from.y) || 1;
    return { x: from.x + ((to.x - from.x) * distance) / length, y: from.y + ((to.y - from.y) * distance) / length };
  };
  let d = `M${points[0].x},${points[0].y}`;
  for (let i = 1; i < points.length - 1; i++) {
    const [previous, corner, next] = [points[i - 1], points[i], points[i + 1]];
    const r = Math.min(
      radius,
      Math.hypot(corner.x - previous.x, corner.y - previous.y) / 2,
      Math.hypot(next.x - corner.x, next.y - corner.y) / 2,
    );
    const a = toward(corner, previous, r);
    const b = toward(corner, next, r);
    d += ` L${a.x},${a.y} Q${corner.x},${corner.y} ${b.x},${b.y}`;
  }
  const last = points[points.length - 1];
  return `${d} L${last.x},${last.y}`;
}

function highlightChart(summary) {
  const chart = state.chart;
  $('chart').dataset.status = summary?.status ?? '';
  if (!chart) return;
  const active = summary ? activeKeys(summary.value) : new Set();
  for (const [key, group] of chart.nodes) group.classList.toggle('active', key !== '' && active.has(key));
  for (const { edge, group, labelGroup } of chart.edges) {
    // (No run shown, no transition of one: a run removed leaves none lit.)
    const taken = Boolean(summary) && state.taken.has(edge.id);
    group.classList.toggle('taken', taken);
    labelGroup?.classList.toggle('taken', taken);
    for (const path of group.querySelectorAll('path')) {
      path.setAttribute('marker-end', taken ? 'url(#arrow-taken)' : 'url(#arrow)');
    }
  }
}

/**
 * The transitions that explain a change of state: from a state active before to one active after,
 * given the paths active before (`was`) and after (`is`).
 */
function takenEdges(was, is) {
  const chart = state.chart;
  if (!chart) return new Set();
  let candidates = chart.edges
    .map(({ edge }) => edge)
    .filter((edge) => {
      if (edge.targetless) return false;
      const source = chart.pathOf.get(edge.source);
      const target = chart.pathOf.get(edge.target);
      return was.has(source) && is.has(target) && (!was.has(target) || edge.reenter);
    });
  const lastEvent = state.detail?.lastEvent;
  let named = candidates.filter((edge) => edge.label === lastEvent);
  if (named.length === 0) {
    // A timer that raises an event (`after runTimeout / raise TIMEOUT`) is logged, not what it
    // raised: the transition taken is the raised event's.
    const raised = new Set(
      chart.transitions
        .filter((edge) => edge.targetless && edge.label === lastEvent)
        .flatMap((edge) => edge.actions.filter((action) => action.startsWith('raise ')).map((action) => action.slice(6))),
    );
    named = candidates.filter((edge) => raised.has(edge.label));
  }
  if (named.length > 0) candidates = named;
  return new Set(candidates.map((edge) => edge.id));
}

function activeKeys(value, prefix = '', keys = new Set()) {
  if (typeof value === 'string') {
    keys.add(prefix ? `${prefix}.${value}` : value);
    return keys;
  }
  for (const [key, child] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    keys.add(path);
    activeKeys(child, path, keys);
  }
  return keys;
}

/** The active paths of a state as the log writes it (`streaming.attempt.receiving`), as {@link activeKeys} gives them. */
function keysOfText(text) {
  const keys = new Set();
  for (const path of text.split(', ')) {
    const parts = path.split('.');
    for (let i = 1; i <= parts.length; i++) keys.add(parts.slice(0, i).join('.'));
  }
  return keys;
}

function valueText(value) {
  if (typeof value === 'string') return value;
  return Object.entries(value)
    .map(([key, child]) => `${key}.${valueText(child)}`)
    .join(', ');
}

function valueKey(value) {
  return JSON.stringify(value);
}

// ---------------------------------------------------------------------------------------------
// Start

$('cancel').addEventListener('click', () => void cancelSelected());
$('runs').addEventListener('keydown', moveInList);
addEventListener('hashchange', () => {
  const runId = runFromHash();
  if (runId && runId !== state.selected) select(runId);
});
$('auth').addEventListener('submit', onKeySubmitted);
setInterval(renderDuration, 500);
connect();
startChart();

function startChart() {
  loadChart().catch((error) => {
    $('chart').textContent = `The chart could not be drawn: ${error.message}`;
    throw error;
  });
}
