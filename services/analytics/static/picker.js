/*
 * The dashboard's channel picker: lists the channels of GET /api/channels and
 * opens the one chosen (?channel=, keeping ?token=). Separate from dashboard.js
 * so the live view does not wait on it.
 */
(function () {
  "use strict";

  const MAX_CHANNELS = 1000;
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");

  function option(channel, selected) {
    const item = document.createElement("option");
    item.value = channel;
    item.textContent = `#${channel}`;
    item.selected = selected;
    return item;
  }

  async function fill(picker) {
    const url = new URL("/api/channels", window.location.origin);
    url.searchParams.set("limit", String(MAX_CHANNELS));
    if (token) url.searchParams.set("token", token);
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(url, { headers, cache: "no-store" });
    if (!response.ok) return;
    const rows = await response.json();
    if (!Array.isArray(rows) || rows.length < 2) return;
    const current = params.get("channel") || rows[0].channel;
    picker.replaceChildren(...rows.map((row) => option(row.channel, row.channel === current)));
    picker.hidden = false;
    const label = document.getElementById("channel-name");
    if (label) label.hidden = true; // the picker names the channel now
  }

  document.addEventListener("DOMContentLoaded", () => {
    const picker = document.getElementById("channel-picker");
    const overview = document.getElementById("overview-link");
    if (overview && token) overview.href = `/channels?token=${encodeURIComponent(token)}`;
    if (!picker) return;
    picker.addEventListener("change", () => {
      const url = new URL(window.location.href);
      url.searchParams.set("channel", picker.value);
      window.location.assign(url);
    });
    fill(picker).catch(() => {});
  });
})();
