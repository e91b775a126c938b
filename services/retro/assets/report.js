(function () {
  "use strict";
  // The report's figures; everything shown here is text or numbers from this block.
  const status = { charts: 0, bands: 0, points: {}, error: null };
  window.streamloopRetro = status;
  const data = JSON.parse(document.getElementById("retro-data").textContent);
  const note = document.getElementById("chart-status");
  if (!data) return;
  if (typeof window.Chart !== "function") {
    status.error = "Chart.js missing";
    if (note) note.textContent = "charts unavailable: the chart library did not load";
    return;
  }
  const Chart = window.Chart;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#59636e";

  const pad = (n) => String(n).padStart(2, "0");
  const clock = (ms) => {
    const d = new Date(ms);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  };

  // Activity bands: a light wash behind the data over each segment's time, and a
  // solid strip in front of it along the bottom of the chart.
  function paintBands(chart, draw) {
    const area = chart.chartArea;
    const x = chart.scales.x;
    const ctx = chart.ctx;
    ctx.save();
    for (const band of data.bands) {
      const left = Math.max(area.left, x.getPixelForValue(band.start));
      const right = Math.min(area.right, x.getPixelForValue(band.end));
      if (right > left) draw(ctx, band, area, left, right);
    }
    ctx.restore();
  }
  const bands = {
    id: "activityBands",
    beforeDatasetsDraw(chart) {
      paintBands(chart, (ctx, band, area, left, right) => {
        ctx.globalAlpha = 0.1;
        ctx.fillStyle = band.colour;
        ctx.fillRect(left, area.top, right - left, area.bottom - area.top);
      });
    },
    afterDatasetsDraw(chart) {
      paintBands(chart, (ctx, band, area, left, right) => {
        ctx.globalAlpha = 1;
        ctx.fillStyle = band.colour;
        ctx.fillRect(left, area.bottom - 6, right - left, 6);
        status.bands += 1;
      });
    },
  };

  function make(id, type, points, colour, options) {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    status.points[id] = points.length;
    new Chart(canvas, {
      type: type,
      data: {
        datasets: [Object.assign({
          data: points,
          borderColor: colour,
          backgroundColor: colour + "33",
          borderWidth: 2,
          pointRadius: 0,
          pointHitRadius: 6,
        }, options || {})],
      },
      options: {
        animation: false,
        parsing: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: { title: (items) => (items.length ? clock(items[0].parsed.x) : "") },
          },
        },
        scales: {
          x: {
            type: "linear",
            offset: false,
            min: data.start,
            max: data.end,
            ticks: { callback: (value) => clock(value), maxTicksLimit: 10, maxRotation: 0 },
          },
          // One y-axis width on every chart, so their time axes line up.
          y: {
            beginAtZero: true,
            ticks: { maxTicksLimit: 6 },
            afterFit: (axis) => {
              axis.width = 56;
            },
          },
        },
      },
      plugins: [bands],
    });
    status.charts += 1;
  }

  try {
    make("viewers-chart", "line", data.viewers, "#1f6feb", { stepped: true, fill: "origin" });
    make("chat-chart", "bar", data.chat, "#8250df", { borderWidth: 0 });
    make("revenue-chart", "line", data.revenue, "#1a7f37", { stepped: true, fill: "origin" });
  } catch (error) {
    status.error = String(error);
    if (note) note.textContent = "charts failed: " + String(error);
  }
})();
