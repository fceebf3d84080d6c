import JindouBalancing

/// `jindouctl bench decode --plot`: decode tokens/s per format and thread count as grouped
/// bars — Jindou, llama.cpp on the same GGUF, and the memory-bandwidth roofline measured in
/// the same run — each bar labelled with its value.
public enum DecodePlot {
    static let jindou: (UInt8, UInt8, UInt8) = (40, 90, 170)
    static let llama: (UInt8, UInt8, UInt8) = (230, 130, 40)
    static let roofline: (UInt8, UInt8, UInt8) = (190, 190, 190)

    public static func render(_ report: DecodeBenchmark.Report) -> RGBImage {
        let bars: [[(Double?, (UInt8, UInt8, UInt8))]] = report.rows.map {
            [($0.jindouDecodeTokensPerSecond, jindou), ($0.llamaCppDecodeTokensPerSecond, llama), ($0.rooflineTokensPerSecond, roofline)]
        }
        let top = max(1, bars.flatMap { $0.compactMap(\.0) }.max() ?? 1)
        let left = 60, plotTop = 70, plotHeight = 300, barWidth = 26, groupGap = 34
        let groupWidth = 3 * barWidth + groupGap
        let width = max(left + groupWidth * report.rows.count + 40, 640)
        let height = plotTop + plotHeight + 70
        var image = RGBImage(width: width, height: height)
        image.draw("DECODE TOKENS/S", x: left, y: 10)
        var x = left
        for (color, name) in [(jindou, "JINDOU"), (llama, "LLAMA.CPP SAME GGUF"), (roofline, "BANDWIDTH ROOFLINE")] {
            image.fill(x: x, y: 40, width: 10, height: 10, color: color)
            image.draw(name, x: x + 14, y: 41, scale: 1)
            x += 24 + RGBImage.textWidth(name, scale: 1)
        }
        let baseline = plotTop + plotHeight
        image.fill(x: left - 4, y: baseline, width: width - left - 20, height: 1, color: (0, 0, 0))
        for (g, row) in report.rows.enumerated() {
            let x0 = left + g * groupWidth
            for (i, (value, color)) in bars[g].enumerated() {
                guard let value else { continue }
                let h = Int(Double(plotHeight) * value / top)
                image.fill(x: x0 + i * barWidth, y: baseline - h, width: barWidth - 4, height: h, color: color)
                let label = value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
                image.draw(label, x: x0 + i * barWidth, y: baseline - h - 10, scale: 1)
            }
            image.draw(row.format, x: x0, y: baseline + 8, scale: 1)
            image.draw("\(row.threads) THREAD" + (row.threads == 1 ? "" : "S"), x: x0, y: baseline + 20, scale: 1)
        }
        return image
    }
}
