// An account's balance over time, drawn from its events as a small inline SVG: a step line
// (a balance holds until the next event), a dot per event, and the same facts as a sentence
// for those who cannot see the chart.
"use strict";

const BalanceChart = (() => {
  const { euros, when } = Bank;
  const NS = "http://www.w3.org/2000/svg";
  // The drawing's own units; the SVG scales to the width of the page.
  const WIDTH = 900;
  const HEIGHT = 150;
  // Room around the plot for the labels: amounts on the left, dates below.
  const LEFT = 80;
  const RIGHT = 8;
  const TOP = 10;
  const BOTTOM = 26;

  // As Bank.el, in SVG's namespace: text is always set as text, never parsed as markup.
  function svgEl(tag, attributes = {}, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // The activity rows (newest first, as the API lists them) as points, oldest first. The
  // numbers only place the points; labels use the API's own two-decimal strings.
  function pointsOf(activity) {
    return activity.slice().reverse().map((row) => ({
      at: new Date(row.occurred_at).getTime(),
      value: Number(row.balance_after),
      balance: row.balance_after,
      occurredAt: row.occurred_at,
    }));
  }

  function extremes(points) {
    let low = points[0];
    let high = points[0];
    for (const point of points) {
      if (point.value < low.value) low = point;
      if (point.value > high.value) high = point;
    }
    return { low, high };
  }

  // The chart in words: its text fallback, and what a screen reader says for it.
  function summary(points, complete) {
    if (points.length === 0) return "No events yet.";
    const first = points[0];
    const last = points[points.length - 1];
    if (points.length === 1) return `Balance ${euros(first.balance)} since ${when(first.occurredAt)}.`;
    const { low, high } = extremes(points);
    const over = complete ? `its ${points.length} events since it was opened` : `its last ${points.length} events`;
    return `Balance over ${over}: from ${euros(first.balance)} (${when(first.occurredAt)})`
      + ` to ${euros(last.balance)} (${when(last.occurredAt)});`
      + ` lowest ${euros(low.balance)}, highest ${euros(high.balance)}.`;
  }

  // An <svg> of the points, or null when there is nothing to draw. `describedBy`: the id of
  // the element holding the summary.
  function draw(points, describedBy) {
    if (points.length === 0) return null;
    const { low, high } = extremes(points);
    const bottom = Math.min(0, low.value); // from zero, so a small change does not look large
    const top = high.value > bottom ? high.value : bottom + 1;
    const plotWidth = WIDTH - LEFT - RIGHT;
    const plotHeight = HEIGHT - TOP - BOTTOM;
    const first = points[0].at;
    const span = points[points.length - 1].at - first;
    // By time; events all at one moment (or a single one) are spread evenly instead.
    const x = (point, i) => {
      if (points.length === 1) return LEFT + plotWidth;
      const share = span > 0 ? (point.at - first) / span : i / (points.length - 1);
      return LEFT + share * plotWidth;
    };
    const y = (value) => TOP + ((top - value) / (top - bottom)) * plotHeight;

    const xs = points.map(x);
    let path = `M${points.length === 1 ? LEFT : xs[0]},${y(points[0].value)}`;
    points.forEach((point, i) => {
      path += ` H${xs[i]} V${y(point.value)}`;
    });
    const axisLabel = (text, atY) => svgEl("text", { x: LEFT - 6, y: atY, "text-anchor": "end", "dominant-baseline": "middle" }, text);
    const bottomText = low.value < 0 ? euros(low.balance) : euros("0.00");
    return svgEl("svg", {
      class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img",
      "aria-labelledby": "balance-chart-title", "aria-describedby": describedBy,
    },
    svgEl("title", { id: "balance-chart-title" }, "Balance over time"),
    svgEl("line", { class: "axis", x1: LEFT, x2: LEFT + plotWidth, y1: y(bottom), y2: y(bottom) }),
    axisLabel(euros(high.balance), y(high.value)),
    high.value > bottom ? axisLabel(bottomText, y(bottom)) : null,
    svgEl("text", { x: LEFT, y: HEIGHT - 6, "text-anchor": "start" }, when(points[0].occurredAt)),
    points.length > 1
      ? svgEl("text", { x: LEFT + plotWidth, y: HEIGHT - 6, "text-anchor": "end" }, when(points[points.length - 1].occurredAt))
      : null,
    svgEl("path", { class: "line", d: path }),
    points.map((point, i) => svgEl("circle", { class: "point", cx: xs[i], cy: y(point.value), r: 3 },
      svgEl("title", {}, `${euros(point.balance)} at ${when(point.occurredAt)}`))));
  }

  return { pointsOf, summary, draw };
})();
