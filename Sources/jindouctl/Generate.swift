import ArgumentParser
import Foundation
import JindouAdmin
import JindouModel
import JindouRouting
import JindouWire

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate tokens from a prompt of token ids.",
        discussion: """
            With --model DIR the single-process engine runs in this process; with --coordinator URL
            (or JINDOU_COORDINATOR) a running cluster generates.
            Examples:
              jindouctl generate --model Tests/Fixtures/qwen3-moe-tiny --prompt-ids 1,2,3 --max-new-tokens 8 --json
              jindouctl generate --coordinator http://127.0.0.1:8080 --prompt-ids 1,2,3 --json
            """
    )

    @Option(help: "Checkpoint directory (config.json + safetensors); runs the engine in-process.")
    var model: String?

    @Option(help: "URL of a running coordinator (default: $JINDOU_COORDINATOR).")
    var coordinator: String?

    @Option(name: .customLong("token-file"), help: "Cluster secret for --coordinator (default: $JINDOU_TOKEN_FILE).")
    var tokenFile: String?

    @OptionGroup var tls: ClientTLSOptions

    @Option(name: .customLong("prompt-ids"), help: "Comma-separated prompt token ids, e.g. 1,2,3.")
    var promptIDs: String

    @Option(name: .customLong("max-new-tokens"), help: "Most tokens to generate.")
    var maxNewTokens: Int = 16

    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens when sampling (0 = off).")
    var topK: Int = 0

    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (1 = off).")
    var topP: Float = 1

    @Option(help: "Seed for reproducible sampling.")
    var seed: UInt64?

    @Option(
        name: .customLong("experts-per-token"),
        help: "Routed experts per token: an integer 1…num_experts, 'auto' or 'auto:THRESHOLD' (default: the model's).")
    var expertsPerToken: String?

    @Option(name: .customLong("auto-threshold"), help: "Cumulative routing share that 'auto' must reach.")
    var autoThreshold: Double = ExpertsPerToken.defaultAutoThreshold

    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at the model's EOS tokens.")
    var ignoreEOS = false

    @Flag(help: "Print one JSON object.")
    var json = false

    @Flag(name: .customLong("emit-logits"), help: "With --json: include last_logits (float32 logits of the last prompt position).")
    var emitLogits = false

    /// The coordinator to ask, from the flag or the environment (only without --model).
    var coordinatorURL: String? {
        coordinator ?? (model == nil ? ProcessInfo.processInfo.environment["JINDOU_COORDINATOR"] : nil)
    }

    func validate() throws {
        if model != nil && coordinator != nil { throw ValidationError("give either --model or --coordinator, not both") }
        if model == nil && coordinatorURL == nil {
            throw ValidationError("give --model DIR (in-process) or --coordinator URL (or set JINDOU_COORDINATOR)")
        }
        guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens must be ≥ 0") }
        guard (try? parsedPrompt()) != nil else {
            throw ValidationError("--prompt-ids must be a comma-separated list of non-negative integers, got '\(promptIDs)'")
        }
        guard autoThreshold > 0, autoThreshold <= 1 else { throw ValidationError("--auto-threshold must be in (0, 1]") }
        if let text = expertsPerToken, ExpertsPerToken(parsing: text, defaultThreshold: autoThreshold) == nil {
            throw ValidationError("--experts-per-token must be a positive integer, 'auto' or 'auto:THRESHOLD', got '\(text)'")
        }
    }

    func parsedPrompt() throws -> [Int] {
        let parts = promptIDs.split(separator: ",", omittingEmptySubsequences: false)
        let ids = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !ids.isEmpty, ids.count == parts.count, ids.allSatisfy({ $0 >= 0 }) else {
            throw ValidationError("bad --prompt-ids")
        }
        return ids
    }

    var body: GenerationRequestBody {
        get throws {
            GenerationRequestBody(
                promptIDs: try parsedPrompt(), maxNewTokens: maxNewTokens, temperature: temperature, topK: topK, topP: topP,
                seed: seed, expertsPerToken: expertsPerToken.flatMap { ExpertsPerToken(parsing: $0, defaultThreshold: autoThreshold) },
                ignoreEOS: ignoreEOS, emitLogits: emitLogits)
        }
    }

    func run() async throws {
        let body = try self.body
        let report: GenerationReport
        do {
            if let model {
                let engine = try InferenceEngine.load(directory: model, prefault: true)
                let result = try await engine.generate(body.request)
                report = GenerationReport(result, requested: body.request.expertsPerToken, description: engine.description)
            } else {
                report = try await makeAdminClient(url: coordinatorURL!, tokenFile: tokenFile, tls: tls)
                    .post("v1/jindou/generate", body, as: GenerationReport.self)
            }
        } catch {
            throw CLIError(error)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            FileHandle.standardOutput.write(try encoder.encode(report) + Data("\n".utf8))
        } else {
            print(report.tokenIDs.map(String.init).joined(separator: " "))
            FileHandle.standardError.write(Data(String(
                format: "%d prompt tokens, %d new (%@), prefill %.3f s, decode %.1f tok/s, experts per token: %@\n",
                report.promptTokens, report.tokenIDs.count, report.finishReason.rawValue, report.prefillSeconds,
                report.decodeTokensPerSecond, report.expertsPerToken.description).utf8))
        }
    }
}

/// One readable line at the edge for any typed error from the layers below.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ error: Error) {
        description = "\(error)"
    }
    init(message: String) {
        description = message
    }
}
