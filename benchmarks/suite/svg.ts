// Hand-written SVG line charts for the benchmark report (no plotting dependency).

export interface Series { name: string, points: Array<[number, number]> }

export interface ChartOptions {
  title: string
  xLabel: string
  yLabel: string
  /** log10 y axis (values <= 0 are dropped) */
  yLog?: boolean
  /** x tick positions with labels (default: 5 even ticks) */
  xTicks?: Array<[number, string]>
  width?: number
  height?: number
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b']

function esc (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function num (x: number): string {
  if (x === 0) return '0'
  const a = Math.abs(x)
  if (a >= 1e6) return (x / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M'
  if (a >= 1e3) return (x / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k'
  if (a >= 1) return String(Math.round(x * 10) / 10)
  return String(Number(x.toPrecision(2)))
}

export function lineChart (series: Series[], o: ChartOptions): string {
  const W = o.width ?? 720
  const H = o.height ?? 420
  const L = 70
  const R = 180
  const T = 40
  const B = 50
  const pw = W - L - R
  const ph = H - T - B
  const pts = series.map((s) => ({ name: s.name, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!(o.yLog ?? false) || y > 0)) }))
  const xs = pts.flatMap((s) => s.points.map((p) => p[0]))
  const ys = pts.flatMap((s) => s.points.map((p) => p[1]))
  let x0 = xs.length > 0 ? Math.min(...xs) : 0
  let x1 = xs.length > 0 ? Math.max(...xs) : 1
  if (o.xTicks !== undefined && o.xTicks.length > 0) {
    x0 = Math.min(x0, o.xTicks[0]![0])
    x1 = Math.max(x1, o.xTicks[o.xTicks.length - 1]![0])
  }
  if (x1 <= x0) x1 = x0 + 1
  const ylog = o.yLog ?? false
  let y0: number
  let y1: number
  if (ylog) {
    y0 = Math.pow(10, Math.floor(Math.log10(ys.length > 0 ? Math.min(...ys) : 1)))
    y1 = Math.pow(10, Math.ceil(Math.log10(ys.length > 0 ? Math.max(...ys) : 10)))
    if (y1 <= y0) y1 = y0 * 10
  } else {
    y0 = 0
    y1 = ys.length > 0 ? Math.max(...ys) * 1.05 : 1
    if (y1 <= 0) y1 = 1
  }
  const sx = (x: number): number => L + (x - x0) / (x1 - x0) * pw
  const sy = (y: number): number => ylog
    ? T + ph - (Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0)) * ph
    : T + ph - (y - y0) / (y1 - y0) * ph
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`)
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`)
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`)
  // grid and ticks
  const xt = o.xTicks ?? Array.from({ length: 6 }, (_, i) => { const v = x0 + (x1 - x0) * i / 5; return [v, num(v)] as [number, string] })
  for (const [v, label] of xt) {
    const x = sx(v).toFixed(1)
    out.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${T + ph}" stroke="#ddd"/>`)
    out.push(`<text x="${x}" y="${T + ph + 16}" text-anchor="middle">${esc(label)}</text>`)
  }
  const yt: number[] = []
  if (ylog) for (let v = y0; v <= y1 * 1.0001; v *= 10) yt.push(v)
  else for (let i = 0; i <= 5; i++) yt.push(y0 + (y1 - y0) * i / 5)
  for (const v of yt) {
    const y = sy(v).toFixed(1)
    out.push(`<line x1="${L}" y1="${y}" x2="${L + pw}" y2="${y}" stroke="#ddd"/>`)
    out.push(`<text x="${L - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${num(v)}</text>`)
  }
  out.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`)
  out.push(`<text x="${L + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`)
  out.push(`<text transform="translate(16 ${T + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`)
  pts.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!
    if (s.points.length > 0) {
      const d = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${d}"/>`)
    }
    const ly = T + 10 + i * 20
    out.push(`<line x1="${L + pw + 12}" y1="${ly}" x2="${L + pw + 32}" y2="${ly}" stroke="${color}" stroke-width="3"/>`)
    out.push(`<text x="${L + pw + 38}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** x ticks of a percentile curve plotted at log10(1 / (1 - p)). */
export const PERCENTILE_TICKS: Array<[number, string]> = [[0, '0%'], [1, '90%'], [2, '99%'], [3, '99.9%'], [4, '99.99%']]

/** Points of a latency percentile curve: [log10(1/(1-p)), value at p] for p from 0 to 99.99 %. */
export function percentileCurve (valueAt: (percentile: number) => number): Array<[number, number]> {
  const out: Array<[number, number]> = []
  for (let k = 0; k <= 40; k++) {
    const p = 100 * (1 - Math.pow(10, -k / 10))
    out.push([k / 10, valueAt(p)])
  }
  return out
}
