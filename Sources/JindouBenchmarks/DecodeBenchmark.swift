import Foundation
import JindouModel

/// `jindouctl bench decode`: single-process decode and prefill tokens/s of Jindou and of
/// llama.cpp's `llama-bench`, per weight format and thread count, in one run, against the
/// memory-bandwidth roofline measured in the same run.
///
/// - Models: one per format, e.g. `bf16=DIR` (a safetensors checkpoint) and
///   `q8_0=FILE.gguf`, `q4_k=FILE.gguf` (written by `jindouctl quantize` from that
///   checkpoint). Jindou loads each with `jindouctl generate --model PATH`; llama.cpp runs
///   `llama-bench -m FILE.gguf -p P -n N -t T` on the identical GGUF files.
/// - Decode: `N` tokens after a 4-token prompt (llama-bench's `tg N` starts from an empty
///   context). Prefill: one `P`-token prompt (llama-bench's `pp P`).
/// - Roofline: the bytes one decode token reads (every non-expert matrix, the LM head, one
///   embedding row, and `experts_per_token` experts of each MoE layer, in their stored
///   format; the KV cache of a short context is negligible) ÷ the STREAM-like read
///   bandwidth at the same thread count = the fastest decode memory allows. Achieved
///   tokens/s ÷ that is the roofline fraction.
/// - Memory: the Jindou process's peak resident set (VmHWM, polled while it runs) against
///   the file's weight bytes.
/// Each measurement is a separate process, one after the other.
public struct DecodeBenchmark: Sendable {
    public struct Model: Sendable {
        public var format: String
        public var path: String
        public init(format: String, path: String) {
            self.format = format
            self.path = path
        }
    }

    public struct Options: Sendable {
        public var models: [Model]
        public var llamaBench: String?
        public var threads: [Int]
        public var tokens: Int
        public var promptTokens: Int
        public var jindouctl: String

        public init(models: [Model], llamaBench: String?, threads: [Int], tokens: Int, promptTokens: Int, jindouctl: String) {
            self.models = models
            self.llamaBench = llamaBench
            self.threads = threads
            self.tokens = tokens
            self.promptTokens = promptTokens
            self.jindouctl = jindouctl
        }
    }

    public struct Row: Codable, Sendable {
        public var format: String
        public var threads: Int
        public var jindouDecodeTokensPerSecond: Double
        public var jindouPrefillTokensPerSecond: Double
        public var llamaCppDecodeTokensPerSecond: Double?
        public var llamaCppPrefillTokensPerSecond: Double?
        /// Jindou ÷ llama.cpp, decode and prefill.
        public var decodeRatio: Double?
        public var prefillRatio: Double?
        /// Read bandwidth (bytes/s) at this thread count: the best pass of the probes at the
        /// start of the run and just before this row (the machine's bandwidth drifts over a
        /// run on shared hosts; the best pass is the closest to what it can do).
        public var readBandwidth: Double
        /// This row's probe passes (best, median, worst).
        public var bandwidthProbe: BandwidthProbe
        /// The probe's spread says the machine was busy while this row ran: its ratios are
        /// still side by side, but its roofline fraction is less certain.
        public var noisy: Bool
        /// `readBandwidth` ÷ bytes per decode token.
        public var rooflineTokensPerSecond: Double
        public var jindouRooflineFraction: Double
        public var llamaCppRooflineFraction: Double?
        public var jindouPeakResidentBytes: Int
    }

    public struct ModelInfo: Codable, Sendable {
        public var format: String
        public var path: String
        public var fileBytes: Int
        /// Bytes of weights one decode token reads.
        public var bytesPerDecodeToken: Int
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var date: String
        public var models: [ModelInfo]
        /// STREAM-like read bandwidth in bytes/s per thread count, measured at the start of this run (best pass).
        public var readBandwidth: [String: Double]
        /// The start-of-run probes, with their spread.
        public var bandwidthProbes: [String: BandwidthProbe]
        public var tokens: Int
        public var promptTokens: Int
        public var rows: [Row]
    }

    public let options: Options
    public init(options: Options) { self.options = options }

    public func run(progress: (String) -> Void = { _ in }) throws -> Report {
        var probes: [String: BandwidthProbe] = [:]
        for t in options.threads {
            let probe = BandwidthProbe.measure(threads: t, passes: 10)
            probes[String(t)] = probe
            progress(String(format: "read bandwidth, %d thread(s): best %.1f GB/s, median %.1f, worst %.1f of %d passes%@", t,
                            probe.best / 1e9, probe.median / 1e9, probe.worst / 1e9, probe.passes, probe.isNoisy ? " (noisy)" : ""))
        }
        var models: [ModelInfo] = []
        var rows: [Row] = []
        for model in options.models {
            let source = try openWeightSource(model.path)
            let vocabulary = try source.modelDescription().vocabularySize
            let info = ModelInfo(format: model.format, path: model.path, fileBytes: try Self.fileBytes(model.path),
                                 bytesPerDecodeToken: try Self.bytesPerDecodeToken(source))
            models.append(info)
            for t in options.threads {
                let rowProbe = BandwidthProbe.measure(threads: t, passes: 5)
                let measured = probes[String(t)]!.merged(rowProbe).best
                let roofline = measured / Double(info.bytesPerDecodeToken)
                // Three rounds, Jindou and llama.cpp interleaved (decode, prefill, then one
                // llama-bench repetition) so both see the same machine on a noisy host; rates
                // are the means over the rounds (llama-bench's `avg_ts` of `-r 1` each).
                let rounds = 3
                var decodes: [JindouRun] = [], prefills: [JindouRun] = [], llamaRuns: [(decode: Double, prefill: Double)] = []
                for _ in 0..<rounds {
                    decodes.append(try jindou(model.path, vocabulary: vocabulary, threads: t, promptTokens: 4, newTokens: options.tokens + 1))
                    prefills.append(try jindou(model.path, vocabulary: vocabulary, threads: t, promptTokens: options.promptTokens, newTokens: 1))
                    if let bench = options.llamaBench, model.path.hasSuffix(".gguf") {
                        llamaRuns.append(try llamaCpp(bench, gguf: model.path, threads: t))
                    }
                }
                func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(values.count) }
                let jindouDecode = mean(decodes.map { Double(options.tokens) / $0.decodeSeconds })
                let jindouPrefill = mean(prefills.map { Double(options.promptTokens) / $0.prefillSeconds })
                progress(String(format: "jindou %@, %d thread(s): decode %.2f tok/s (%.0f%% of roofline), prefill %.1f tok/s",
                                model.format, t, jindouDecode, jindouDecode / roofline * 100, jindouPrefill))
                let llama = llamaRuns.isEmpty ? nil : (decode: mean(llamaRuns.map(\.decode)), prefill: mean(llamaRuns.map(\.prefill)))
                if let llama {
                    progress(String(format: "llama.cpp %@, %d thread(s): decode %.2f tok/s, prefill %.1f tok/s",
                                    model.format, t, llama.decode, llama.prefill))
                }
                rows.append(Row(
                    format: model.format, threads: t, jindouDecodeTokensPerSecond: jindouDecode, jindouPrefillTokensPerSecond: jindouPrefill,
                    llamaCppDecodeTokensPerSecond: llama?.decode, llamaCppPrefillTokensPerSecond: llama?.prefill,
                    decodeRatio: llama.map { jindouDecode / $0.decode }, prefillRatio: llama.map { jindouPrefill / $0.prefill },
                    readBandwidth: measured, bandwidthProbe: rowProbe, noisy: rowProbe.isNoisy || rowProbe.best < 0.8 * measured,
                    rooflineTokensPerSecond: roofline, jindouRooflineFraction: jindouDecode / roofline,
                    llamaCppRooflineFraction: llama.map { $0.decode / roofline },
                    jindouPeakResidentBytes: (decodes + prefills).map(\.peakResidentBytes).max()!))
            }
        }
        return Report(machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()), models: models,
                      readBandwidth: probes.mapValues(\.best), bandwidthProbes: probes, tokens: options.tokens,
                      promptTokens: options.promptTokens, rows: rows)
    }

    /// Bytes of weights one decode token reads from `source`'s model, in their stored format.
    public static func bytesPerDecodeToken(_ source: any WeightSource) throws -> Int {
        let d = try source.modelDescription()
        let nonExpert = d.nonExpertTensors()
        var bytes = try source.byteCount(of: nonExpert)
        if !d.tieWordEmbeddings, let embedding = nonExpert.first(where: { $0.name == d.embeddingName }) {
            // The embedding contributes one row; a tied one is also the LM head, read whole.
            let whole = try source.byteCount(of: [embedding])
            bytes -= whole - whole / d.vocabularySize
        }
        for layer in d.sparseLayers {
            bytes += d.router.expertsPerToken * (try source.byteCount(of: d.expertTensors(ExpertKey(layer: layer, expert: 0))))
        }
        return bytes
    }

    static func fileBytes(_ path: String) throws -> Int {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw BenchmarkError("no model at \(path)")
        }
        let files = isDirectory.boolValue
            ? try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".safetensors") }.map { path + "/" + $0 }
            : [path]
        return try files.reduce(0) { total, file in
            let target = URL(fileURLWithPath: file).resolvingSymlinksInPath().path
            return total + ((try FileManager.default.attributesOfItem(atPath: target)[.size] as? NSNumber)?.intValue ?? 0)
        }
    }

    struct JindouRun {
        var prefillSeconds: Double
        var decodeSeconds: Double
        var peakResidentBytes: Int
    }

    func jindou(_ model: String, vocabulary: Int, threads: Int, promptTokens: Int, newTokens: Int) throws -> JindouRun {
        let prompt = (0..<promptTokens).map { String(($0 * 7919 + 13) % vocabulary) }.joined(separator: ",")
        let (output, peak) = try Self.run(options.jindouctl, ["generate", "--model", model, "--prompt-ids", prompt,
                                                              "--max-new-tokens", String(newTokens), "--ignore-eos", "--json"],
                                          environment: ["JINDOU_THREADS": String(threads)])
        guard let object = try JSONSerialization.jsonObject(with: output) as? [String: Any],
              let tokens = object["token_ids"] as? [Int], tokens.count == newTokens,
              let decode = object["decode_seconds"] as? Double, let prefill = object["prefill_seconds"] as? Double, prefill > 0 else {
            throw BenchmarkError("jindouctl generate printed no token_ids / decode_seconds / prefill_seconds")
        }
        return JindouRun(prefillSeconds: prefill, decodeSeconds: decode, peakResidentBytes: peak)
    }

    func llamaCpp(_ bench: String, gguf: String, threads: Int) throws -> (decode: Double, prefill: Double) {
        let directory = URL(fileURLWithPath: bench).deletingLastPathComponent().path
        let (output, _) = try Self.run(bench, ["-m", gguf, "-p", String(options.promptTokens), "-n", String(options.tokens),
                                               "-t", String(threads), "-r", "1", "-o", "json"],
                                       environment: ["LD_LIBRARY_PATH": directory])
        guard let results = try JSONSerialization.jsonObject(with: output) as? [[String: Any]],
              let decode = results.first(where: { ($0["n_gen"] as? Int ?? 0) > 0 })?["avg_ts"] as? Double,
              let prefill = results.first(where: { ($0["n_prompt"] as? Int ?? 0) > 0 })?["avg_ts"] as? Double else {
            throw BenchmarkError("llama-bench printed no pp/tg avg_ts")
        }
        return (decode, prefill)
    }

    /// Runs a process to completion; returns its stdout and its peak resident set (VmHWM,
    /// polled every 50 ms while it runs).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> (Data, Int) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        let peak = PeakResidentSet(pid: process.processIdentifier)
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchmarkError("\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        return (data, peak.stop())
    }
}

/// Polls /proc/PID/status for VmHWM (the peak resident set so far) until stopped.
final class PeakResidentSet: @unchecked Sendable {
    // @unchecked: `peak` and `running` are only touched under `lock`.
    private let lock = NSLock()
    private var peak = 0
    private var running = true

    init(pid: Int32) {
        Thread { [self] in
            while poll(pid) { Thread.sleep(forTimeInterval: 0.05) }
        }.start()
    }

    /// Records the current VmHWM; whether to keep polling.
    private func poll(_ pid: Int32) -> Bool {
        let kilobytes = Self.highWaterKilobytes(pid: pid)
        return lock.withLock {
            if let kilobytes { peak = max(peak, kilobytes * 1024) }
            return running
        }
    }

    /// Stops polling; the largest VmHWM seen.
    func stop() -> Int {
        lock.withLock {
            running = false
            return peak
        }
    }

    static func highWaterKilobytes(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }
}

extension DecodeBenchmark.Report {
    public var markdown: String {
        func gb(_ b: Int) -> String { String(format: "%.2f", Double(b) / 1e9) }
        var lines = [
            "## Decode and prefill on \(ClusterBenchmark.processor(machine)): Jindou and llama.cpp on the same files (`jindouctl bench decode`)",
            "",
            "Machine: \(machine). Run: \(date). Read bandwidth measured in the same run (STREAM-like SIMD sum over 1 GiB, best of "
                + "several passes; best / median / worst): "
                + bandwidthProbes.keys.sorted().map { key in
                    let p = bandwidthProbes[key]!
                    return String(format: "%.1f / %.1f / %.1f GB/s with %@ thread(s)", p.best / 1e9, p.median / 1e9, p.worst / 1e9, key)
                }.joined(separator: ", ") + " at the start, and again just before each row; a row's roofline uses the best pass of both"
                + " (*read GB/s*). Rows marked * ran while the machine was busy (their probe's best pass was under 80 % of that,"
                + " or its passes spread more than \(BandwidthProbe.noisySpread)×): their Jindou ÷ llama.cpp ratio is still"
                + " measured side by side, their roofline fractions are less certain.",
            "Decode: \(tokens) tokens after a 4-token prompt (llama-bench: `tg\(tokens)`). Prefill: a \(promptTokens)-token prompt"
                + " (llama-bench: `pp\(promptTokens)`); rates are means over 3 rounds, Jindou and llama-bench interleaved"
                + " in each round so both see the same machine."
                + " Roofline = read bandwidth ÷ bytes one decode token reads.",
            "",
            "| format | model file | file GB | GB read per decode token |",
            "|---|---|---|---|",
        ]
        for m in models {
            lines.append("| \(m.format) | `\(m.path)` | \(gb(m.fileBytes)) | \(String(format: "%.3f", Double(m.bytesPerDecodeToken) / 1e9)) |")
        }
        lines += [
            "",
            "| format | threads | Jindou decode tok/s | llama.cpp decode tok/s | Jindou ÷ llama.cpp | read GB/s | roofline tok/s | Jindou % of roofline | llama.cpp % of roofline | Jindou prefill tok/s | llama.cpp prefill tok/s | prefill ratio | Jindou peak RSS GB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        func optional(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "—" }
        for r in rows {
            lines.append("| \(r.format)\(r.noisy ? " *" : "") | \(r.threads) | " + String(format: "%.2f", r.jindouDecodeTokensPerSecond)
                + " | \(optional(r.llamaCppDecodeTokensPerSecond, "%.2f")) | \(optional(r.decodeRatio, "%.2f")) | "
                + String(format: "%.1f | %.2f | %.0f%%", r.readBandwidth / 1e9, r.rooflineTokensPerSecond, r.jindouRooflineFraction * 100)
                + " | \(optional(r.llamaCppRooflineFraction.map { $0 * 100 }, "%.0f%%")) | "
                + String(format: "%.1f", r.jindouPrefillTokensPerSecond)
                + " | \(optional(r.llamaCppPrefillTokensPerSecond, "%.1f")) | \(optional(r.prefillRatio, "%.2f")) | \(gb(r.jindouPeakResidentBytes)) |")
        }
        return lines.joined(separator: "\n")
    }
}
