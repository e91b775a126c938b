/*
 * streamloop overview: every channel at a glance (GET /api/channels, one page
 * at a time). Plain browser JavaScript, no build step; server text reaches the
 * page only through textContent. ?token= is passed on like the dashboard does.
 */
(function () {
  "use strict";

  const PAGE_SIZE = 50;
  const REFRESH_MS = 5000;
  const params = new URLSearchParams(window.location.search);
  const state = {
    token: params.get("token") || null,
    offset: Math.max(0, parseInt(params.get("offset") || "0", 10) || 0),
    total: 0,
    seq: 0,
  };
  const byId = (id) => document.getElementById(id);
  const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  const whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function withToken(path) {
    const url = new URL(path, window.location.origin);
    if (state.token) url.searchParams.set("token", state.token);
    return url;
  }

  function dashboardLink(channel) {
    const url = withToken("/");
    url.searchParams.set("channel", channel);
    const link = document.createElement("a");
    link.href = url.pathname + url.search;
    link.textContent = `#${channel}`;
    return link;
  }

  function cell(row, content, className) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function renderRow(info) {
    const row = document.createElement("tr");
    row.dataset.channel = info.channel;
    cell(row, dashboardLink(info.channel));
    cell(row, info.is_live ? "live" : "offline", info.is_live ? "is-live" : "muted");
    cell(row, info.is_live ? whole.format(info.viewer_count) : "—");
    cell(row, info.current_activity || "—");
    cell(row, money.format(info.revenue_stream));
    cell(row, info.is_live ? whole.format(info.engagement_score) : "—");
    const health = cell(row, info.health, "health");
    health.dataset.health = info.health;
    if (info.orchestrator) health.title = `decided by ${info.orchestrator}`;
    return row;
  }

  function setStatus(text, kind) {
    const status = byId("overview-status");
    status.textContent = text;
    status.dataset.state = kind;
  }

  function renderPager() {
    const last = state.offset + PAGE_SIZE >= state.total;
    byId("overview-prev").disabled = state.offset === 0;
    byId("overview-next").disabled = last;
    const to = Math.min(state.total, state.offset + PAGE_SIZE);
    byId("overview-page").textContent =
      state.total ? `${state.offset + 1}–${to} of ${state.total}` : "no channels";
    byId("overview-count").textContent = `${state.total} channels`;
  }

  async function refresh() {
    const seq = ++state.seq;
    const url = withToken("/api/channels");
    url.searchParams.set("offset", String(state.offset));
    url.searchParams.set("limit", String(PAGE_SIZE));
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    try {
      const response = await fetch(url, { headers, cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const rows = await response.json();
      if (seq !== state.seq) return;
      state.total = parseInt(response.headers.get("X-Total-Count") || "0", 10) || rows.length;
      byId("overview-rows").replaceChildren(...rows.map(renderRow));
      renderPager();
      setStatus(`updated ${new Date().toLocaleTimeString()}`, "connected");
    } catch (error) {
      if (seq === state.seq) setStatus(`cannot load channels (${error.message})`, "reconnecting");
    }
  }

  function go(delta) {
    state.offset = Math.max(0, state.offset + delta);
    const url = new URL(window.location.href);
    url.searchParams.set("offset", String(state.offset));
    window.history.replaceState(null, "", url);
    refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("overview-prev").addEventListener("click", () => go(-PAGE_SIZE));
    byId("overview-next").addEventListener("click", () => go(PAGE_SIZE));
    refresh();
    window.setInterval(refresh, REFRESH_MS);
  });
})();
