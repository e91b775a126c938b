/*
 * streamloop live dashboard.
 *
 * Plain browser JavaScript, no build step. It reads metrics pushed over the
 * analytics WebSocket (/ws/metrics) and two JSON endpoints (timeline, bandit).
 *
 * Everything the server sends is untrusted: text reaches the page only through
 * textContent / attributes, never innerHTML.
 *
 * For tests and debugging: window.streamloopDashboard (see the end of the file).
 */
(function () {
  "use strict";

  const MAX_REVENUE_POINTS = 500;
  const MAX_DONATIONS = 50;
  const MAX_TIMELINE_ROWS = 30;
  const PANEL_REFRESH_MS = 30000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  // A socket that lived this long (or got a message) counts as healthy: the
  // next reconnect starts again from the shortest delay.
  const STABLE_SOCKET_MS = 5000;
  const DONATION_TYPES = new Set(["donation", "bits"]);

  const params = new URLSearchParams(window.location.search);

  const state = {
    requestedChannel: params.get("channel") || null,
    channel: params.get("channel") || null,
    token: params.get("token") || null,
    activity: undefined,
    socket: null,
    connection: "connecting",
    retrying: false, // true once the first attempt failed or a socket dropped
    backoffMs: BACKOFF_MIN_MS,
    reconnectTimer: null,
    revenue: [], // {x: epoch ms, y: cumulative}, sorted by x; also the chart's data
    revenueKeys: new Set(),
    chart: null,
    chartUpdatePending: false,
    donationIds: new Set(),
    activityNames: {},
    timelineSeq: 0,
    banditSeq: 0,
    retroSeq: 0,
  };

  const byId = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- formatting

  const moneyFormat = new Intl.NumberFormat("en-US", {
    style: "currency",
    currency: "USD",
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
  });
  const integerFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const oneDecimalFormat = new Intl.NumberFormat("en-US", {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  function formatMoney(value) {
    return isNumber(value) ? moneyFormat.format(value) : "—";
  }

  function formatInteger(value) {
    return isNumber(value) ? integerFormat.format(value) : "—";
  }

  function formatOneDecimal(value) {
    return isNumber(value) ? oneDecimalFormat.format(value) : "—";
  }

  function formatClock(epochMs) {
    return new Date(epochMs).toLocaleTimeString([], {
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    });
  }

  function formatDuration(ms) {
    const totalSeconds = Math.max(0, Math.round(ms / 1000));
    const hours = Math.floor(totalSeconds / 3600);
    const minutes = Math.floor((totalSeconds % 3600) / 60);
    const seconds = totalSeconds % 60;
    if (hours > 0) return `${hours}h ${String(minutes).padStart(2, "0")}m`;
    if (minutes > 0) return `${minutes}m ${String(seconds).padStart(2, "0")}s`;
    return `${seconds}s`;
  }

  function parseTime(value) {
    const ms = typeof value === "string" ? Date.parse(value) : NaN;
    return Number.isFinite(ms) ? ms : null;
  }

  function textOf(value, fallback) {
    return typeof value === "string" && value !== "" ? value : fallback;
  }

  // One fixed colour per activity / arm name: the five built-in activities have
  // their own, any other name hashes onto the palette, so the tile, the timeline
  // bands and the bandit bars agree and a name keeps its colour across reloads.
  const PALETTE = [
    "#58a6ff", "#d2a8ff", "#f0883e", "#3fb950", "#f778ba",
    "#e3b341", "#39c5cf", "#ff7b72", "#a5d6ff", "#7ee787",
  ];
  const FIXED_COLOURS = {
    talk: PALETTE[0],
    q_and_a: PALETTE[1],
    gameplay: PALETTE[2],
    react: PALETTE[3],
    music: PALETTE[4],
  };

  function colourFor(name) {
    const key = String(name);
    if (Object.prototype.hasOwnProperty.call(FIXED_COLOURS, key)) return FIXED_COLOURS[key];
    let hash = 0;
    for (const char of key) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
    return PALETTE[5 + (hash % (PALETTE.length - 5))];
  }

  // Names as a person writes them: the server's ACTIVITY_NAMES (sent on connect as
  // activity_names), else the built-in ones, else an id such as "deep_dive" as
  // "Deep dive"; anything else is shown exactly as given (as text, never HTML).
  const BUILT_IN_NAMES = {
    talk: "Talk",
    q_and_a: "Q&A",
    gameplay: "Gameplay",
    react: "React",
    music: "Music",
  };

  function displayName(name) {
    const key = String(name);
    const own = Object.prototype.hasOwnProperty;
    if (own.call(state.activityNames, key)) return state.activityNames[key];
    if (own.call(BUILT_IN_NAMES, key)) return BUILT_IN_NAMES[key];
    if (!/^[a-z0-9_]+$/.test(key)) return key; // not an activity id: shown as it is
    const spaced = key.replace(/_/g, " ");
    return spaced.charAt(0).toUpperCase() + spaced.slice(1);
  }

  function applyActivityNames(data) {
    const names = {};
    for (const [key, value] of Object.entries(data)) {
      if (typeof value === "string" && value !== "") names[key] = value.slice(0, 40);
    }
    state.activityNames = names;
    if (state.activity) setText("activity", displayName(state.activity));
    refreshPanels();
  }

  // ------------------------------------------------------------------ DOM bits

  function setText(id, text) {
    const element = byId(id);
    if (element && element.textContent !== text) element.textContent = text;
  }

  function el(tag, className, text) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function showMessage(container, text) {
    container.replaceChildren(el("p", "muted", text));
  }

  // ------------------------------------------------------------ stream tiles

  function applyStreamState(data) {
    applyLive(data.isLive);
    setText("viewers", formatInteger(data.viewerCount));
    setText("uptime", textOf(data.uptime, "—"));
    setText("chat-velocity", formatOneDecimal(data.chatVelocity));
    applyEngagement(data.engagementScore);
    applyActivity(data.currentActivity);
    updateTitle(data);
  }

  function applyLive(isLive) {
    const badge = byId("live-badge");
    const live = isLive === true;
    badge.dataset.live = String(live);
    badge.textContent = live ? "LIVE" : "OFFLINE";
  }

  function applyEngagement(score) {
    setText("engagement", formatInteger(score));
    const clamped = isNumber(score) ? Math.min(100, Math.max(0, score)) : 0;
    byId("engagement-meter").style.width = `${clamped}%`;
  }

  function applyActivity(activity) {
    const name = textOf(activity, null);
    setText("activity", name ? displayName(name) : "—");
    byId("activity").style.color = name ? colourFor(name) : "";
    const previous = state.activity;
    state.activity = name;
    if (previous !== undefined && previous !== name) refreshPanels();
    else markCurrentArm();
  }

  function updateTitle(data) {
    const live = data.isLive === true ? "● LIVE" : "offline";
    const viewers = isNumber(data.viewerCount) ? ` · ${formatInteger(data.viewerCount)} viewers` : "";
    document.title = `${live}${viewers} · streamloop`;
  }

  function applyMetrics(data) {
    setText("revenue-today", formatMoney(data.revenueToday));
    setText("subs", formatInteger(data.subsCount));
    setText("bits", formatInteger(data.bitsToday));
    setText("donations-per-hour", formatMoney(data.donationsPerHour));
  }

  // ------------------------------------------------------------ revenue chart

  function addRevenuePoint(data) {
    const x = parseTime(data.timestamp);
    if (x === null || !isNumber(data.cumulative)) return;
    const key = `${x}|${data.cumulative}`;
    if (state.revenueKeys.has(key)) return; // replayed after a reconnect
    insertSorted(state.revenue, { x, y: data.cumulative });
    state.revenueKeys.add(key);
    while (state.revenue.length > MAX_REVENUE_POINTS) {
      const dropped = state.revenue.shift();
      state.revenueKeys.delete(`${dropped.x}|${dropped.y}`);
    }
    scheduleChartUpdate();
  }

  function insertSorted(points, point) {
    const last = points[points.length - 1];
    if (!last || last.x <= point.x) {
      points.push(point);
      return;
    }
    const index = points.findIndex((p) => p.x > point.x);
    points.splice(index, 0, point);
  }

  function scheduleChartUpdate() {
    if (!state.chart || state.chartUpdatePending) return;
    state.chartUpdatePending = true;
    window.requestAnimationFrame(() => {
      state.chartUpdatePending = false;
      state.chart.update("none");
    });
  }

  function createChart() {
    const canvas = byId("revenue-chart");
    if (typeof window.Chart !== "function") {
      const status = byId("chart-status");
      status.textContent = "chart library failed to load";
      status.hidden = false;
      return null;
    }
    const Chart = window.Chart;
    Chart.defaults.color = "#9aa4b2";
    Chart.defaults.borderColor = "rgba(255, 255, 255, 0.08)";
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    return new Chart(canvas, chartConfig());
  }

  function chartConfig() {
    return {
      type: "line",
      data: {
        datasets: [
          {
            label: "cumulative revenue",
            data: state.revenue,
            stepped: true,
            borderColor: "#3fb950",
            backgroundColor: "rgba(63, 185, 80, 0.15)",
            borderWidth: 2,
            fill: "origin",
            pointRadius: 0,
            pointHitRadius: 6,
          },
        ],
      },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "time",
            time: {
              tooltipFormat: "HH:mm:ss",
              displayFormats: { second: "HH:mm:ss", minute: "HH:mm", hour: "HH:mm" },
            },
            ticks: { maxTicksLimit: 8, maxRotation: 0 },
          },
          y: {
            beginAtZero: true,
            ticks: { callback: (value) => formatMoney(value), maxTicksLimit: 6 },
          },
        },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: (ctx) => formatMoney(ctx.parsed.y) } },
        },
      },
    };
  }

  // ------------------------------------------------------------ donation feed

  function addDonation(data) {
    const id = textOf(data.id, null);
    if (id !== null) {
      if (state.donationIds.has(id)) return; // replayed after a reconnect
      state.donationIds.add(id);
    }
    const feed = byId("donation-feed");
    const item = donationItem(data);
    feed.insertBefore(item, firstOlderItem(feed, Number(item.dataset.ts)));
    trimFeed(feed);
  }

  function donationItem(data) {
    const type = DONATION_TYPES.has(data.type) ? data.type : "donation";
    const ts = parseTime(data.timestamp);
    const item = el("li", "donation new");
    item.dataset.ts = String(ts === null ? Date.now() : ts);
    if (typeof data.id === "string") item.dataset.id = data.id;

    const head = el("div", "donation-head");
    head.append(
      el("span", `badge type-badge type-${type}`, type),
      el("span", "donor", textOf(data.username, "anonymous")),
      el("span", "amount", formatMoney(data.amount)),
      el("time", "donation-time", ts === null ? "" : formatClock(ts)),
    );
    item.append(head);
    const message = textOf(data.message, "");
    if (message) item.append(el("p", "donation-message", message));
    item.addEventListener("animationend", () => item.classList.remove("new"), { once: true });
    return item;
  }

  // Newest first: the new item goes before the first one that is not newer.
  function firstOlderItem(feed, ts) {
    for (const child of feed.children) {
      if (Number(child.dataset.ts) <= ts) return child;
    }
    return null;
  }

  function trimFeed(feed) {
    while (feed.children.length > MAX_DONATIONS) {
      const removed = feed.lastElementChild;
      if (removed.dataset.id) state.donationIds.delete(removed.dataset.id);
      removed.remove();
    }
  }

  // --------------------------------------------------------------- REST panels

  function apiUrl(path) {
    const url = new URL(path, window.location.origin);
    if (state.token) url.searchParams.set("token", state.token);
    return url;
  }

  function channelUrl(suffix) {
    return apiUrl(`/api/channels/${encodeURIComponent(state.channel)}/${suffix}`);
  }

  async function fetchJson(url) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const response = await fetch(url, { headers, cache: "no-store" });
    if (!response.ok) {
      const error = new Error(`HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  async function refreshPanels() {
    if (!state.channel) await resolveChannel();
    await Promise.all([refreshTimeline(), refreshBandit(), refreshRetro()]);
  }

  function showChannel() {
    setText("channel-name", state.channel ? `#${state.channel}` : "channel: server default");
  }

  // With no ?channel= the server's socket serves its first channel; GET
  // /api/channels lists them in the same order, so the panels use that one.
  async function resolveChannel() {
    try {
      const channels = await fetchJson(apiUrl("/api/channels"));
      const first = Array.isArray(channels) ? channels[0] : null;
      if (first && typeof first.channel === "string" && first.channel !== "") {
        state.channel = first.channel;
        showChannel();
      }
    } catch (error) {
      // Left unknown: the panels say so, and the next refresh tries again.
    }
  }

  const NO_CHANNEL = "channel unknown yet (GET /api/channels failed)";

  async function refreshTimeline() {
    const container = byId("timeline");
    if (!state.channel) return showMessage(container, NO_CHANNEL);
    const seq = ++state.timelineSeq;
    try {
      const body = await fetchJson(channelUrl("timeline"));
      if (seq === state.timelineSeq) renderTimeline(container, body);
    } catch (error) {
      if (seq !== state.timelineSeq) return;
      showMessage(container, `timeline unavailable (${error.message})`);
    }
  }

  async function refreshBandit() {
    const container = byId("bandit");
    if (!state.channel) return showMessage(container, NO_CHANNEL);
    const seq = ++state.banditSeq;
    try {
      const body = await fetchJson(channelUrl("bandit"));
      if (seq === state.banditSeq) renderBandit(container, body);
    } catch (error) {
      // 404 (no orchestrator yet) or any failure: the same plain message.
      if (seq === state.banditSeq) showMessage(container, "bandit not running yet");
    }
  }

  // The header links to the channel's latest post-stream report (GET .../retros),
  // hidden until there is one. Only a same-origin /retros/ path becomes a link.
  async function refreshRetro() {
    const link = byId("latest-retro");
    if (!link || !state.channel) return;
    const seq = ++state.retroSeq;
    try {
      const body = await fetchJson(channelUrl("retros?limit=1"));
      if (seq !== state.retroSeq) return;
      const latest = Array.isArray(body) ? body[0] : null;
      const path = latest && typeof latest.url === "string" ? latest.url : "";
      if (!path.startsWith("/retros/")) {
        link.hidden = true;
        return;
      }
      link.href = apiUrl(path).toString();
      link.title = `${textOf(latest.stream_id, "")} · ended ${textOf(latest.ended, "?")}`;
      link.hidden = false;
    } catch (error) {
      if (seq === state.retroSeq) link.hidden = true;
    }
  }

  // ------------------------------------------------------------------ timeline

  // Durations are event time from the server: an on-air segment runs for its
  // duration_s (to the channel clock), never to this browser's clock, which a
  // faster-than-real-time simulator or a replay does not follow.
  function timelineSegments(body) {
    const raw = body && Array.isArray(body.segments) ? body.segments : [];
    return raw
      .map((segment) => ({
        activity: textOf(segment && segment.activity, "unknown"),
        start: parseTime(segment && segment.start),
        end: parseTime(segment && segment.end),
        durationMs: isNumber(segment && segment.duration_s) ? segment.duration_s * 1000 : 0,
        onAir: !(segment && segment.end),
        decidedBy: textOf(segment && segment.decided_by, ""),
        reason: textOf(segment && segment.reason, ""),
      }))
      .filter((segment) => segment.start !== null)
      .map((segment) => ({
        ...segment,
        end: segment.end === null ? segment.start + Math.max(0, segment.durationMs) : segment.end,
      }))
      .sort((a, b) => a.start - b.start);
  }

  function renderTimeline(container, body) {
    const segments = timelineSegments(body);
    if (segments.length === 0) return showMessage(container, "no segments yet");
    container.replaceChildren(timelineBand(segments), timelineList(segments));
  }

  function timelineBand(segments) {
    const band = el("div", "timeline-band");
    const from = segments[0].start;
    const span = Math.max(1, Math.max(...segments.map((s) => s.end)) - from);
    for (const segment of segments) {
      const block = el("span", "timeline-block");
      block.style.left = `${((segment.start - from) / span) * 100}%`;
      block.style.width = `${Math.max(0.3, ((segment.end - segment.start) / span) * 100)}%`;
      block.style.background = colourFor(segment.activity);
      block.title = `${displayName(segment.activity)} · ${formatDuration(segment.end - segment.start)}`;
      band.append(block);
    }
    return band;
  }

  function timelineList(segments) {
    const list = el("ol", "timeline-list");
    for (const segment of segments.slice(-MAX_TIMELINE_ROWS).reverse()) {
      list.append(timelineRow(segment));
    }
    return list;
  }

  function timelineRow(segment) {
    const row = el("li", segment.onAir ? "timeline-row on-air" : "timeline-row");
    const chip = el("span", "activity-chip", displayName(segment.activity));
    chip.style.borderColor = colourFor(segment.activity);
    const duration = formatDuration(segment.end - segment.start) + (segment.onAir ? " · on air" : "");
    row.append(
      el("time", "timeline-start", formatClock(segment.start)),
      chip,
      el("span", "timeline-duration", duration),
      el("span", "timeline-reason", reasonText(segment)),
    );
    if (segment.reason) row.title = segment.reason;
    return row;
  }

  // "bandit: sampled music highest", read once: a reason that already starts with
  // who decided is not prefixed again.
  function reasonText(segment) {
    const who = segment.decidedBy;
    if (!who || segment.reason.toLowerCase().startsWith(who.toLowerCase())) return segment.reason;
    return [who, segment.reason].filter(Boolean).join(": ");
  }

  // -------------------------------------------------------------------- bandit

  function banditArms(body) {
    const raw = body && Array.isArray(body.arms) ? body.arms : [];
    return raw
      .filter((arm) => arm && typeof arm.arm === "string")
      .map((arm) => ({
        name: arm.arm,
        alpha: arm.alpha,
        beta: arm.beta,
        mean: isNumber(arm.mean) ? arm.mean : posteriorMean(arm.alpha, arm.beta),
        sd: isNumber(arm.sd) ? arm.sd : posteriorSd(arm.alpha, arm.beta),
        updates: arm.updates,
      }))
      .sort((a, b) => (b.mean || 0) - (a.mean || 0));
  }

  function posteriorMean(alpha, beta) {
    return isNumber(alpha) && isNumber(beta) && alpha + beta > 0 ? alpha / (alpha + beta) : null;
  }

  function posteriorSd(alpha, beta) {
    if (!isNumber(alpha) || !isNumber(beta) || alpha + beta <= 0) return null;
    const total = alpha + beta;
    return Math.sqrt((alpha * beta) / (total * total * (total + 1)));
  }

  function renderBandit(container, body) {
    const arms = banditArms(body);
    if (arms.length === 0) return showMessage(container, "no arms yet");
    const list = el("ol", "arms");
    for (const arm of arms) list.append(armRow(arm));
    container.replaceChildren(list);
    markCurrentArm();
  }

  function armRow(arm) {
    const row = el("li", "arm");
    row.dataset.arm = arm.name;
    const bar = el("span", "arm-bar");
    const fill = el("span", "arm-fill");
    fill.style.width = `${percent(arm.mean)}%`;
    fill.style.background = colourFor(arm.name);
    bar.append(fill);
    if (arm.sd !== null && arm.mean !== null) bar.append(sdWhisker(arm));
    row.append(
      el("span", "arm-name", displayName(arm.name)),
      bar,
      el("span", "arm-mean", arm.mean === null ? "—" : arm.mean.toFixed(2)),
      el("span", "arm-params", armEvidence(arm)),
    );
    return row;
  }

  // The estimate's uncertainty in reward units and how many scored chunks it rests on.
  function armEvidence(arm) {
    const sd = arm.sd === null ? "" : `± ${arm.sd.toFixed(2)} · `;
    const chunks = isNumber(arm.updates) ? `${arm.updates} chunks · ` : "";
    return `${sd}${chunks}α ${formatOneDecimal(arm.alpha)} · β ${formatOneDecimal(arm.beta)}`;
  }

  function sdWhisker(arm) {
    const whisker = el("span", "arm-sd");
    const low = percent(arm.mean - arm.sd);
    whisker.style.left = `${low}%`;
    whisker.style.width = `${percent(arm.mean + arm.sd) - low}%`;
    return whisker;
  }

  function percent(fraction) {
    return isNumber(fraction) ? Math.min(100, Math.max(0, fraction * 100)) : 0;
  }

  function markCurrentArm() {
    for (const row of byId("bandit").querySelectorAll(".arm")) {
      row.classList.toggle("current", row.dataset.arm === state.activity);
    }
  }

  // ---------------------------------------------------------------- messages

  const HANDLERS = new Map([
    ["stream_state", applyStreamState],
    ["metrics_update", applyMetrics],
    ["revenue_point", addRevenuePoint],
    ["donation", addDonation],
    ["activity_names", applyActivityNames],
  ]);

  function handleMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      console.warn("dashboard: ignoring a frame that is not JSON");
      return;
    }
    if (!message || typeof message !== "object") return;
    const handler = HANDLERS.get(message.type);
    if (!handler || !message.data || typeof message.data !== "object") return; // unknown: ignored
    handler(message.data);
  }

  // ------------------------------------------------------------------- socket

  function socketUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL("/ws/metrics", `${scheme}//${window.location.host}`);
    if (state.requestedChannel) url.searchParams.set("channel", state.requestedChannel);
    if (state.token) url.searchParams.set("token", state.token);
    return url.toString();
  }

  function showConnection(connection, text) {
    state.connection = connection;
    const indicator = byId("connection");
    indicator.dataset.state = connection;
    indicator.textContent = text;
    document.body.classList.toggle("stale", connection !== "connected");
  }

  function connect() {
    window.clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    const socket = new WebSocket(socketUrl());
    const life = { openedAt: null, gotMessage: false };
    state.socket = socket;
    if (state.retrying) showConnection("reconnecting", "reconnecting…");
    else showConnection("connecting", "connecting…");

    socket.addEventListener("open", () => {
      life.openedAt = Date.now();
      showConnection("connected", "connected");
    });
    socket.addEventListener("message", (event) => {
      life.gotMessage = true;
      if (typeof event.data === "string") handleMessage(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (state.socket !== socket) return;
      state.socket = null;
      if (wasHealthy(life)) state.backoffMs = BACKOFF_MIN_MS;
      scheduleReconnect(event.reason);
    });
  }

  function wasHealthy(life) {
    if (life.gotMessage) return true;
    return life.openedAt !== null && Date.now() - life.openedAt >= STABLE_SOCKET_MS;
  }

  // reason: the server's close reason (e.g. a refused token), shown as text.
  function scheduleReconnect(reason) {
    const delay = state.backoffMs;
    state.backoffMs = Math.min(delay * 2, BACKOFF_MAX_MS);
    state.retrying = true;
    const why = reason ? ` — ${String(reason).slice(0, 120)}` : "";
    showConnection("reconnecting", `reconnecting… (retry in ${(delay / 1000).toFixed(1)} s)${why}`);
    state.reconnectTimer = window.setTimeout(connect, delay);
  }

  // The network came back: try now instead of waiting out the backoff.
  function reconnectNow() {
    if (state.reconnectTimer === null) return;
    state.backoffMs = BACKOFF_MIN_MS;
    connect();
  }

  // --------------------------------------------------------------------- start

  function start() {
    showChannel();
    state.chart = createChart();
    refreshPanels();
    window.setInterval(refreshPanels, PANEL_REFRESH_MS);
    window.addEventListener("online", reconnectNow);
    connect();
  }

  window.streamloopDashboard = Object.freeze({
    /** Points on the cumulative revenue chart (at most 500). */
    revenuePoints: () => state.revenue.length,
    /** Items in the donation feed (at most 50). */
    donations: () => byId("donation-feed").children.length,
    /** "connecting", "connected" or "reconnecting". */
    connectionState: () => state.connection,
    /** The channel the panels use: ?channel=, else the first of GET /api/channels; null until known. */
    channel: () => state.channel,
    /** Refetch the timeline, the bandit panel and the latest-retro link now. */
    refreshPanels,
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
