import Foundation

/// `jindouctl bench decode`: single-process decode tokens/s of Jindou and of llama.cpp's
/// `llama-bench` on the same model and machine, in one run, per thread count.
///
/// Jindou runs `jindouctl generate --model DIR --expert-format F` (experts re-encoded from
/// the checkpoint exactly as `jindouctl quantize` writes them into the GGUF) with
/// `JINDOU_THREADS`; llama.cpp runs `llama-bench -m FILE.gguf -p 0 -n N -t T -o json`.
/// Each is a separate process, measured one after the other.
public struct DecodeBenchmark: Sendable {
    public struct Options: Sendable {
        public var model: String
        public var gguf: String
        public var llamaBench: String?
        public var expertFormat: String
        public var threads: [Int]
        public var tokens: Int
        public var jindouctl: String

        public init(model: String, gguf: String, llamaBench: String?, expertFormat: String, threads: [Int], tokens: Int, jindouctl: String) {
            self.model = model
            self.gguf = gguf
            self.llamaBench = llamaBench
            self.expertFormat = expertFormat
            self.threads = threads
            self.tokens = tokens
            self.jindouctl = jindouctl
        }
    }

    public struct Row: Codable, Sendable {
        public var threads: Int
        public var jindouTokensPerSecond: Double
        public var jindouPrefillSeconds: Double
        public var llamaCppTokensPerSecond: Double?
        public var ratio: Double?
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var date: String
        public var model: String
        public var gguf: String
        public var ggufBytes: Int
        public var expertFormat: String
        public var tokens: Int
        public var rows: [Row]
    }

    public let options: Options
    public init(options: Options) { self.options = options }

    public func run(progress: (String) -> Void = { _ in }) throws -> Report {
        var rows: [Row] = []
        for t in options.threads {
            let (jindou, prefill) = try jindouDecode(threads: t)
            progress(String(format: "jindou, %d thread(s): %.2f tokens/s", t, jindou))
            var llama: Double?
            if let bench = options.llamaBench {
                llama = try llamaCppDecode(bench, threads: t)
                progress(String(format: "llama.cpp, %d thread(s): %.2f tokens/s", t, llama!))
            }
            rows.append(Row(threads: t, jindouTokensPerSecond: jindou, jindouPrefillSeconds: prefill, llamaCppTokensPerSecond: llama,
                            ratio: llama.map { jindou / $0 }))
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: options.gguf)[.size] as? NSNumber)?.intValue ?? 0
        return Report(machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()), model: options.model,
                      gguf: options.gguf, ggufBytes: size, expertFormat: options.expertFormat, tokens: options.tokens, rows: rows)
    }

    func jindouDecode(threads: Int) throws -> (Double, Double) {
        // Experts in the GGUF's expert format, every other matrix Q8_0, as `jindouctl quantize` writes them.
        let output = try Self.run(options.jindouctl, ["generate", "--model", options.model, "--expert-format", options.expertFormat,
                                                      "--dense-format", "q8_0",
                                                      "--prompt-ids", "1,2,3,4", "--max-new-tokens", String(options.tokens + 1),
                                                      "--ignore-eos", "--json"],
                                  environment: ["JINDOU_THREADS": String(threads)])
        guard let object = try JSONSerialization.jsonObject(with: output) as? [String: Any],
              let tokens = object["token_ids"] as? [Int], let decode = object["decode_seconds"] as? Double, decode > 0,
              let prefill = object["prefill_seconds"] as? Double else {
            throw BenchmarkError("jindouctl generate printed no token_ids / decode_seconds")
        }
        // As GenerationResult.decodeTokensPerSecond: the first token comes from the prefill.
        return (Double(tokens.count - 1) / decode, prefill)
    }

    func llamaCppDecode(_ bench: String, threads: Int) throws -> Double {
        let directory = URL(fileURLWithPath: bench).deletingLastPathComponent().path
        let output = try Self.run(bench, ["-m", options.gguf, "-p", "0", "-n", String(options.tokens), "-t", String(threads), "-r", "3", "-o", "json"],
                                  environment: ["LD_LIBRARY_PATH": directory])
        guard let results = try JSONSerialization.jsonObject(with: output) as? [[String: Any]],
              let rate = results.first?["avg_ts"] as? Double else {
            throw BenchmarkError("llama-bench printed no avg_ts")
        }
        return rate
    }

    static func run(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchmarkError("\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
        return data
    }
}

extension DecodeBenchmark.Report {
    public var markdown: String {
        var lines = [
            "## Decode: Jindou and llama.cpp on the same model (`jindouctl bench decode`)",
            "",
            "Machine: \(machine). Run: \(date). Model: `\(model)`; llama.cpp reads `\(gguf)` "
                + String(format: "(%.2f GB, written by `jindouctl quantize --to %@`)", Double(ggufBytes) / 1e9, expertFormat)
                + "; Jindou loads the checkpoint with `--expert-format \(expertFormat) --dense-format q8_0`, which encodes every"
                + " matrix to the same bytes as the GGUF (embedding rows and routers stay bf16; they are read per token, not per weight).",
            "Decode of \(tokens) tokens after a 4-token prompt, one process at a time.",
            "",
            "| threads | Jindou tok/s | llama.cpp tok/s | Jindou ÷ llama.cpp |",
            "|---|---|---|---|",
        ]
        for r in rows {
            lines.append(String(format: "| %d | %.2f | %@ | %@ |", r.threads, r.jindouTokensPerSecond,
                                r.llamaCppTokensPerSecond.map { String(format: "%.2f", $0) } ?? "—",
                                r.ratio.map { String(format: "%.2f", $0) } ?? "—"))
        }
        return lines.joined(separator: "\n")
    }
}
