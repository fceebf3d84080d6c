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
