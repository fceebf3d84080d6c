import Foundation
import JindouBalancing

/// `jindouctl bench network --plot`: for each model and rate, decode tokens/s at every
/// RTT as grouped bars — Jindou batch 1, llama.cpp batch 1, and at the largest stream
/// count Jindou (best of --micro-batches 1/2) and llama.cpp — each labelled with its value.
public enum NetworkPlot {
    static let colors: [(UInt8, UInt8, UInt8)] = [(120, 160, 220), (240, 180, 120), (40, 90, 170), (200, 100, 20)]

    public static func render(_ report: NetworkBenchmark.Report) -> RGBImage {
        let streams = report.rows.first?.streams.last?.streams ?? 0
        let bars: [[Double?]] = report.rows.map { row in
            [row.jindouDecodeTokensPerSecond, row.llamaCppDecodeTokensPerSecond, row.streams.last?.bestJindou, row.streams.last?.llamaCpp]
        }
        let top = max(1, bars.flatMap { $0.compactMap { $0 } }.max() ?? 1)
        let left = 60, plotTop = 70, plotHeight = 300, barWidth = 22, groupGap = 30
        let groupWidth = 4 * barWidth + groupGap
        let width = max(left + groupWidth * report.rows.count + 40, 720)
        let height = plotTop + plotHeight + 84
        var image = RGBImage(width: width, height: height)
        image.draw("DECODE TOKENS/S OVER EMULATED LINKS", x: left, y: 10)
        var x = left
        let names = ["JINDOU BATCH 1", "LLAMA.CPP RPC BATCH 1", "JINDOU \(streams) STREAMS", "LLAMA.CPP RPC \(streams) STREAMS"]
        for (color, name) in zip(colors, names) {
            image.fill(x: x, y: 40, width: 10, height: 10, color: color)
            image.draw(name, x: x + 14, y: 41, scale: 1)
            x += 24 + RGBImage.textWidth(name, scale: 1)
        }
        let baseline = plotTop + plotHeight
        image.fill(x: left - 4, y: baseline, width: width - left - 20, height: 1, color: (0, 0, 0))
        for (g, row) in report.rows.enumerated() {
            let x0 = left + g * groupWidth
            for (i, value) in bars[g].enumerated() {
                guard let value else { continue }
                let h = Int(Double(plotHeight) * value / top)
                image.fill(x: x0 + i * barWidth, y: baseline - h, width: barWidth - 3, height: h, color: colors[i])
                let label = value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
                image.draw(label, x: x0 + i * barWidth, y: baseline - h - 10 - (i % 2) * 9, scale: 1)
            }
            image.draw(row.model.uppercased(), x: x0, y: baseline + 8, scale: 1)
            image.draw("RTT +\(row.rtt.uppercased())", x: x0, y: baseline + 20, scale: 1)
            image.draw((row.rate ?? "UNSHAPED").uppercased(), x: x0, y: baseline + 32, scale: 1)
            image.draw("\(row.workers) HOSTS", x: x0, y: baseline + 44, scale: 1)
        }
        return image
    }
}

extension NetworkPlot {
    /// The latency model against the measurements: each measured decode rate (batch 1,
    /// streams with one and two micro-batches, n-gram) at its predicted rate, on log axes,
    /// with the diagonal and the ±15 % band.
    public static func renderModel(_ report: NetworkBenchmark.Report) -> RGBImage {
        var points: [(Double, Double, (UInt8, UInt8, UInt8))] = []
        for row in report.rows {
            points.append((row.predicted.decodeTokensPerSecond, row.jindouDecodeTokensPerSecond, colors[0]))
            for s in row.streams {
                if let p = row.predicted.streams[s.streams] {
                    points.append((p[0], s.jindouOneMicroBatch, colors[2]))
                    points.append((p[1], s.jindouTwoMicroBatches, colors[3]))
                }
            }
            points.append((row.predicted.speculationTokensPerSecond, row.speculation.ngramTokensPerSecond, colors[1]))
        }
        let values = points.flatMap { [$0.0, $0.1] }.filter { $0 > 0 }
        let low = log10(max(0.1, (values.min() ?? 1) / 1.5)), high = log10((values.max() ?? 10) * 1.5)
        let left = 70, top = 60, size = 420
        var image = RGBImage(width: left + size + 40, height: top + size + 60)
        image.draw("MEASURED VS PREDICTED DECODE TOKENS/S", x: left, y: 10)
        var x = left
        for (color, name) in zip([colors[0], colors[2], colors[3], colors[1]], ["BATCH 1", "STREAMS MB1", "STREAMS MB2", "NGRAM"]) {
            image.fill(x: x, y: 36, width: 10, height: 10, color: color)
            image.draw(name, x: x + 14, y: 37, scale: 1)
            x += 24 + RGBImage.textWidth(name, scale: 1)
        }
        func position(_ v: Double) -> Int { Int(Double(size) * (log10(max(v, 1e-9)) - low) / (high - low)) }
        // Axes, the diagonal and the ±15 % band.
        image.fill(x: left, y: top + size, width: size, height: 1, color: (0, 0, 0))
        image.fill(x: left, y: top, width: 1, height: size, color: (0, 0, 0))
        for step in 0..<size {
            let v = pow(10, low + (high - low) * Double(step) / Double(size))
            for (factor, color) in [(1.0, (120, 120, 120)), (1.15, (210, 210, 210)), (0.85, (210, 210, 210))] as [(Double, (UInt8, UInt8, UInt8))] {
                let y = position(v * factor)
                if (0..<size).contains(y) { image.fill(x: left + step, y: top + size - y, width: 1, height: 1, color: color) }
            }
        }
        for decade in Int(low.rounded(.up))...Int(high.rounded(.down)) {
            let p = position(pow(10, Double(decade)))
            image.draw(String(Int(pow(10, Double(decade)))), x: left - 8 - RGBImage.textWidth(String(Int(pow(10, Double(decade)))), scale: 1),
                       y: top + size - p - 3, scale: 1)
            image.draw(String(Int(pow(10, Double(decade)))), x: left + p - 4, y: top + size + 6, scale: 1)
        }
        image.draw("PREDICTED", x: left + size / 2 - 30, y: top + size + 22, scale: 1)
        image.draw("MEASURED", x: 4, y: top - 14, scale: 1)
        for (predicted, measured, color) in points {
            image.fill(x: left + position(predicted) - 3, y: top + size - position(measured) - 3, width: 7, height: 7, color: color)
        }
        return image
    }
}
