import ArgumentParser
import Foundation
import JindouBenchmarks
import JindouTokenizer

struct QualityBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quality",
        abstract: "KL and top-1 agreement of quantised GGUF files against the unquantised model, per file, with bits per weight.",
        discussion: """
            Example (llama.cpp's files of every mix, made from the committed checkpoint):
              jindouctl bench quality --reference Tests/Fixtures/qwen3-moe-w256 \\
                  --model Q4_K_M=Tests/Fixtures/gguf-mixes/qwen3-moe-w256-Q4_K_M.gguf --model Q8_0=…
            Prompts: --text FILE tokenized with the reference's tokenizer, in chunks of --chunk tokens.
            Writes the 'quality' section of --out and the JSON results.
            """
    )

    @Option(help: "The unquantised checkpoint directory (or GGUF file) to compare with.")
    var reference: String
    @Option(name: .customLong("model"), help: "NAME=FILE.gguf, repeatable.")
    var models: [String] = []
    @Option(help: "Text to make the prompts from (tokenized with the reference's tokenizer.json).")
    var text: String = "docs/architecture.md"
    @Option(help: "Tokens per prompt.")
    var chunk: Int = 64
    @Option(help: "Most prompts.")
    var prompts: Int = 8
    @Option(help: "Markdown file to update.")
    var out: String = "docs/quantization.md"
    @Option(help: "JSON results file.")
    var json: String = "docs/benchmarks/quality.json"

    var parsed: [QualityBenchmark.Model] {
        models.compactMap { spec in
            guard let equals = spec.firstIndex(of: "=") else { return nil }
            return QualityBenchmark.Model(name: String(spec[..<equals]), path: String(spec[spec.index(after: equals)...]))
        }
    }

    func validate() throws {
        guard !models.isEmpty, parsed.count == models.count else { throw ValidationError("--model NAME=FILE.gguf, at least one") }
        guard chunk >= 1, prompts >= 1 else { throw ValidationError("--chunk and --prompts must be ≥ 1") }
    }

    func run() async throws {
        do {
            let tokenizer = try textSide(of: reference).0
            let body = try String(contentsOfFile: text, encoding: .utf8)
            let ids = tokenizer.encode(body)
            let chunks = stride(from: 0, to: ids.count - chunk + 1, by: chunk).prefix(prompts).map { Array(ids[$0..<($0 + chunk)]) }
            guard !chunks.isEmpty else { throw CLIError(message: "\(text) is shorter than one prompt of \(chunk) tokens") }
            let report = try await QualityBenchmark(reference: reference, models: parsed, prompts: chunks).run { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
            try BenchmarkReport.writeJSON(report, to: json)
            try BenchmarkReport.replaceSection(named: "quality", in: out, with: report.markdown)
            print(report.markdown)
        } catch let error as CLIError { throw error } catch { throw CLIError(error) }
    }
}
