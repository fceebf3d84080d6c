import Foundation

/// `jindouctl load --plot`: a heat map of a window's routed tokens (one row per sparse
/// layer, one column per expert, white → dark red relative to the layer's hottest expert)
/// beside a bar chart of each worker's share of the assignments, with the mean share as a
/// grey line, so the hot experts and the worker the step waits for are visible at once.
public enum LoadPlot {
    /// One sparse layer's per-expert token counts.
    public struct Layer: Sendable {
        public var layer: Int
        public var experts: [Int]
        public init(layer: Int, experts: [Int]) {
            self.layer = layer
            self.experts = experts
        }
    }

    /// One worker's share of the window's assignments (0…1).
    public struct Worker: Sendable {
        public var name: String
        public var share: Double
        public init(name: String, share: Double) {
            self.name = name
            self.share = share
        }
    }

    /// The colour of `value` in 0…1: white at 0, through orange, to dark red at 1.
    public static func heat(_ value: Double) -> (UInt8, UInt8, UInt8) {
        let v = min(1, max(0, value))
        let stops: [(Double, (Double, Double, Double))] = [(0, (255, 255, 255)), (0.5, (250, 160, 60)), (1, (140, 10, 10))]
        let i = v < 0.5 ? 0 : 1
        let (a, ca) = stops[i], (b, cb) = stops[i + 1]
        let t = (v - a) / (b - a)
        return (UInt8(ca.0 + (cb.0 - ca.0) * t), UInt8(ca.1 + (cb.1 - ca.1) * t), UInt8(ca.2 + (cb.2 - ca.2) * t))
    }

    /// Cell size of the heat map for `experts` columns and `layers` rows (both ≥ 2 px).
    static func cell(experts: Int, layers: Int) -> (width: Int, height: Int) {
        (max(2, min(24, 768 / max(1, experts))), max(2, min(24, 480 / max(1, layers))))
    }

    public static func render(layers: [Layer], workers: [Worker]) -> RGBImage {
        let experts = layers.map(\.experts.count).max() ?? 0
        let (cw, ch) = cell(experts: experts, layers: layers.count)
        let left = 70, top = 40, gap = 60, barHeight = 18, barGap = 8, labelWidth = 110, barMax = 260
        let title = "TOKENS PER EXPERT", legend = "0 ... HOTTEST IN LAYER"
        let mapWidth = max(cw * experts, RGBImage.textWidth(title), 60 + RGBImage.textWidth(legend, scale: 1))
        let mapHeight = max(ch * layers.count, 40) + 40
        let chartHeight = workers.count * (barHeight + barGap)
        let width = left + mapWidth + gap + labelWidth + barMax + 80
        let height = top + max(mapHeight, chartHeight) + 50
        var image = RGBImage(width: width, height: height)

        image.draw(title, x: left, y: 10)
        for (row, layer) in layers.enumerated() {
            let hottest = Double(layer.experts.max() ?? 0)
            for (e, count) in layer.experts.enumerated() {
                let color = hottest > 0 ? heat(Double(count) / hottest) : heat(0)
                image.fill(x: left + e * cw, y: top + row * ch, width: cw, height: ch, color: color)
            }
            // Label every row when they are tall enough, else every 8th.
            if ch >= 14 || row % 8 == 0 {
                let label = "L\(layer.layer)"
                image.draw(label, x: left - 8 - RGBImage.textWidth(label, scale: 1), y: top + row * ch, scale: 1)
            }
        }
        image.fill(x: left, y: top + layers.count * ch + 2, width: cw * experts, height: 1, color: (0, 0, 0))
        for e in stride(from: 0, to: experts, by: max(1, 40 / cw)) {
            image.draw("\(e)", x: left + e * cw, y: top + layers.count * ch + 6, scale: 1)
        }
        image.draw("EXPERT", x: left, y: top + layers.count * ch + 20, scale: 1)
        // Colour scale.
        for i in 0..<50 {
            image.fill(x: left + i, y: top + layers.count * ch + 34, width: 1, height: 8, color: heat(Double(i) / 49))
        }
        image.draw(legend, x: left + 56, y: top + layers.count * ch + 35, scale: 1)

        let x0 = left + mapWidth + gap
        image.draw("WORKER SHARE", x: x0, y: 10)
        let largest = max(workers.map(\.share).max() ?? 0, 1e-9)
        // The mean share, under the bars (it shows between them).
        if !workers.isEmpty {
            let mean = 1 / Double(workers.count)
            let x = x0 + labelWidth + Int(Double(barMax) * mean / largest)
            image.fill(x: x, y: top - 4, width: 1, height: chartHeight + 4, color: (120, 120, 120))
            image.draw("MEAN", x: x - RGBImage.textWidth("MEAN", scale: 1) / 2, y: top + chartHeight + 2, scale: 1, color: (120, 120, 120))
        }
        for (i, worker) in workers.enumerated() {
            let y = top + i * (barHeight + barGap)
            image.draw(String(worker.name.prefix(16)), x: x0, y: y + 5, scale: 1)
            let length = Int(Double(barMax) * worker.share / largest)
            image.fill(x: x0 + labelWidth, y: y, width: length, height: barHeight, color: (60, 140, 200))
            image.draw(String(format: "%.1f%%", worker.share * 100), x: x0 + labelWidth + length + 6, y: y + 5, scale: 1)
        }
        return image
    }
}
