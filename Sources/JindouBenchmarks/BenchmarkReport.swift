import Foundation

/// Writes benchmark results: a JSON file per benchmark and a section of docs/benchmarks.md
/// (between `<!-- BEGIN name -->` / `<!-- END name -->` markers, replaced on each run).
public enum BenchmarkReport {
    public static func replaceSection(named name: String, in path: String, with body: String) throws {
        let begin = "<!-- BEGIN \(name) -->", end = "<!-- END \(name) -->"
        var text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "# Benchmarks\n"
        let section = "\(begin)\n\(body)\n\(end)"
        if let start = text.range(of: begin), let stop = text.range(of: end), start.lowerBound < stop.upperBound {
            text.replaceSubrange(start.lowerBound..<stop.upperBound, with: section)
        } else {
            text += "\n\(section)\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    public static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try encoder.encode(value).write(to: URL(fileURLWithPath: path))
    }
}

extension ClusterBenchmark.Report {
    /// The markdown section for docs/benchmarks.md.
    public var markdown: String {
        func ms(_ s: Double) -> String { String(format: "%.3f", s * 1000) }
        func mb(_ b: Int) -> String { String(format: "%.0f", Double(b) / 1e6) }
        var lines = [
            "## Cluster: dispatch/combine and decode (`jindouctl bench cluster`)",
            "",
            "Model: `\(model)`. Machine: \(machine). Run: \(date).",
            "All workers and the coordinator share this machine's cores and memory bandwidth, so more",
            "workers cannot be faster here; the table isolates Jindou's own costs. Per-layer times are",
            "for one decode token at the first MoE layer, averaged over repetitions.",
            "",
            "Single-process decode: \(String(format: "%.2f", singleProcessTokensPerSecond)) tokens/s.",
            "",
            "| workers | link | decode tok/s | × single | layer dispatch+combine ms | raw round trip (same bytes) ms | expert compute ms | overhead ms | exchange ÷ (round trip + compute) | worker RSS MB | worker expert MB |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in runs {
            let ratio = r.layerExchangeSeconds / max(1e-12, r.rawRoundTripSeconds + r.computeSeconds)
            lines.append("| \(r.workers) | \(r.transport ?? "tcp") | \(String(format: "%.2f", r.decodeTokensPerSecond)) | \(String(format: "%.2f", r.ratioToSingleProcess)) | \(ms(r.layerExchangeSeconds)) | \(ms(r.rawRoundTripSeconds)) | \(ms(r.computeSeconds)) | \(ms(r.overheadSeconds)) | \(String(format: "%.2f", ratio)) | \(r.workerResidentBytes.map(mb).joined(separator: ", ")) | \(r.workerExpertBytes.map(mb).joined(separator: ", ")) |")
        }
        // Shared memory against TCP loopback, per worker count, when both ran.
        let pairs = Dictionary(grouping: runs, by: \.workers).sorted { $0.key < $1.key }.compactMap { count, group -> String? in
            guard let tcp = group.first(where: { ($0.transport ?? "tcp") == "tcp" }), let shm = group.first(where: { $0.transport == "shm" })
            else { return nil }
            return "| \(count) | \(String(format: "%.2f", tcp.layerExchangeSeconds / shm.layerExchangeSeconds))× | "
                + "\(String(format: "%.2f", tcp.rawRoundTripSeconds / shm.rawRoundTripSeconds))× | "
                + "\(String(format: "%.2f", shm.decodeTokensPerSecond / tcp.decodeTokensPerSecond))× |"
        }
        if !pairs.isEmpty {
            lines += ["", "Shared memory against TCP loopback, same workers, same run (higher = shared memory faster):", "",
                      "| workers | layer dispatch+combine, TCP ÷ shm | raw round trip, TCP ÷ shm | decode tok/s, shm ÷ TCP |",
                      "|---|---|---|---|"] + pairs
        }
        return lines.joined(separator: "\n")
    }
}
