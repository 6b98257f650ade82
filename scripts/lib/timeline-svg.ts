// One picture per fault: for each implementation (one repetition), a row per
// node showing when it held the VIP (and, pale, when the address was still on
// its link but fenced off by vipd's nftables fence), and a client row showing
// which node answered (in that node's colour) or that nothing did (red). Two
// bars in one column of node rows mean two holders. Pure: trial timelines in,
// SVG text out.
import { overlap } from "../../test/lab/stats.ts";
import type { Timeline } from "../../test/lab/trial.ts";

export interface TimelinePanel {
  title: string;
  /** A line under the title: the numbers of this repetition. */
  subtitle: string;
  timeline: Timeline;
}

const NODE_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"];
const FAIL = "#d62728";
const W = 960;
const LEFT = 90;
const RIGHT = 20;
const ROW = 16;
const GAP = 4;

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function timelineSvg(title: string, panels: readonly TimelinePanel[]): string {
  const nodes = [...new Set(panels.flatMap((p) => Object.keys(p.timeline.ownership)))].sort();
  const colour = (n: string) => NODE_COLOURS[Math.max(0, nodes.indexOf(n)) % NODE_COLOURS.length]!;
  const from = Math.min(...panels.map((p) => p.timeline.from));
  const to = Math.max(...panels.map((p) => p.timeline.to));
  const x = (t: number) => LEFT + ((t - from) / (to - from)) * (W - LEFT - RIGHT);
  const panelH = 40 + (nodes.length + 2) * (ROW + GAP) + 10;
  const H = 50 + panels.length * panelH + 40;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="10" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`,
  ];
  let y = 50;
  for (const p of panels) {
    const tl = p.timeline;
    out.push(`<text x="10" y="${y + 14}" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<text x="10" y="${y + 30}" fill="#555">${esc(p.subtitle)}</text>`);
    let ry = y + 40;
    // Two holders at once, the failure that matters most, gets its own row.
    const both = overlap(Object.values(tl.ownership));
    out.push(`<text x="10" y="${ry + 12}" fill="${both.total > 0 ? FAIL : "#555"}">2+ holders</text>`);
    out.push(`<rect x="${LEFT}" y="${ry}" width="${W - LEFT - RIGHT}" height="${ROW}" fill="#f2f2f2"/>`);
    for (const i of both.intervals) {
      out.push(`<rect x="${x(i.start).toFixed(1)}" y="${ry}" width="${Math.max(1, x(i.end) - x(i.start)).toFixed(1)}" height="${ROW}" fill="${FAIL}" opacity="0.8"><title>two holders: ${Math.round(i.end - i.start)} ms</title></rect>`);
    }
    ry += ROW + GAP;
    for (const n of nodes) {
      out.push(`<text x="10" y="${ry + 12}">${esc(n)} holds</text>`);
      out.push(`<rect x="${LEFT}" y="${ry}" width="${W - LEFT - RIGHT}" height="${ROW}" fill="#f2f2f2"/>`);
      // The address still on the link while vipd's fence drops its traffic: pale, outlined.
      for (const i of tl.fenced?.[n] ?? []) {
        out.push(`<rect x="${x(i.start).toFixed(1)}" y="${ry + 0.5}" width="${Math.max(1, x(i.end) - x(i.start)).toFixed(1)}" height="${ROW - 1}" fill="${colour(n)}" fill-opacity="0.2" stroke="${colour(n)}" stroke-dasharray="2,2"><title>${esc(n)} fenced: address present, traffic dropped ${Math.round(i.start)}…${Math.round(i.end)} ms</title></rect>`);
      }
      for (const i of tl.ownership[n] ?? []) {
        out.push(`<rect x="${x(i.start).toFixed(1)}" y="${ry}" width="${Math.max(1, x(i.end) - x(i.start)).toFixed(1)}" height="${ROW}" fill="${colour(n)}"><title>${esc(n)}: ${Math.round(i.start)}…${Math.round(i.end)} ms</title></rect>`);
      }
      ry += ROW + GAP;
    }
    out.push(`<text x="10" y="${ry + 12}">client</text>`);
    out.push(`<rect x="${LEFT}" y="${ry}" width="${W - LEFT - RIGHT}" height="${ROW}" fill="#f2f2f2"/>`);
    for (const a of tl.answers) {
      out.push(`<rect x="${x(a.start).toFixed(1)}" y="${ry}" width="${Math.max(1, x(a.end) - x(a.start)).toFixed(1)}" height="${ROW}" fill="${colour(a.node)}" opacity="0.6"/>`);
    }
    for (const o of tl.outages) {
      out.push(`<rect x="${x(o.start).toFixed(1)}" y="${ry}" width="${Math.max(1, x(o.end) - x(o.start)).toFixed(1)}" height="${ROW}" fill="${FAIL}"><title>no answer: ${Math.round(o.end - o.start)} ms</title></rect>`);
    }
    const top = y + 40;
    const bottom = ry + ROW;
    out.push(`<line x1="${x(0)}" x2="${x(0)}" y1="${top - 4}" y2="${bottom + 4}" stroke="black" stroke-dasharray="3,2"/>`);
    out.push(`<line x1="${x(tl.recoverAt)}" x2="${x(tl.recoverAt)}" y1="${top - 4}" y2="${bottom + 4}" stroke="#777" stroke-dasharray="3,2"/>`);
    y += panelH;
  }
  // Axis: seconds from the fault.
  const axisY = y;
  out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${axisY}" y2="${axisY}" stroke="#333"/>`);
  for (let s = Math.ceil(from / 1000); s <= to / 1000; s++) {
    out.push(`<line x1="${x(s * 1000)}" x2="${x(s * 1000)}" y1="${axisY}" y2="${axisY + 4}" stroke="#333"/>`);
    if (s % 2 === 0) out.push(`<text x="${x(s * 1000)}" y="${axisY + 16}" text-anchor="middle">${s} s</text>`);
  }
  const fenced = panels.some((p) => Object.values(p.timeline.fenced ?? {}).some((l) => l.length > 0));
  const legend = [...nodes.map((n) => `<tspan fill="${colour(n)}">■</tspan> ${esc(n)}`), `<tspan fill="${FAIL}">■</tspan> client got no answer / two holders`,
    ...(fenced ? ["pale: address present but fenced"] : []),
    "dashed lines: fault applied (black), fault ends (grey)"].join("    ");
  out.push(`<text x="${LEFT}" y="${axisY + 34}">${legend}</text>`);
  out.push("</svg>");
  return out.join("\n");
}
