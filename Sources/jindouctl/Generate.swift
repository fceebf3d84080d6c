import ArgumentParser
import Foundation
import JindouModel
import JindouRouting

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate tokens from a prompt of token ids.",
        discussion: """
            Example:
              jindouctl generate --model Tests/Fixtures/qwen3-moe-tiny --prompt-ids 1,2,3 --max-new-tokens 8 --json
            """
    )

    @Option(help: "Checkpoint directory (config.json + safetensors); runs the engine in-process.")
    var model: String

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

    func validate() throws {
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

    func run() async throws {
        let experts = expertsPerToken.flatMap { ExpertsPerToken(parsing: $0, defaultThreshold: autoThreshold) } ?? .configured
        let request = GenerationRequest(
            promptTokenIDs: try parsedPrompt(), maxNewTokens: maxNewTokens,
            sampling: SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed),
            expertsPerToken: experts, stopTokenIDs: ignoreEOS ? [] : nil, returnLastPromptLogits: emitLogits)
        let result: GenerationResult
        let effectiveExperts: ExpertsPerToken
        do {
            let engine = try InferenceEngine.load(directory: model, prefault: true)
            effectiveExperts = experts == .configured ? .fixed(engine.description.router.expertsPerToken) : experts
            result = try await engine.generate(request)
        } catch {
            throw CLIError(error)
        }
        if json {
            var object: [String: Any] = [
                "token_ids": result.tokenIDs,
                "experts_per_token": effectiveExperts.jsonValue,
                "finish_reason": result.finishReason.rawValue,
                "prompt_tokens": result.promptTokenCount,
                "prefill_seconds": result.prefillSeconds,
                "decode_seconds": result.decodeSeconds,
            ]
            if let logits = result.lastPromptLogits {
                object["last_logits"] = logits.map { Double($0) }
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        } else {
            print(result.tokenIDs.map(String.init).joined(separator: " "))
            let rate = result.decodeTokensPerSecond
            FileHandle.standardError.write(Data(String(
                format: "%d prompt tokens, %d new (%@), prefill %.3f s, decode %.1f tok/s, experts per token: %@\n",
                result.promptTokenCount, result.tokenIDs.count, result.finishReason.rawValue, result.prefillSeconds,
                rate, effectiveExperts.description).utf8))
        }
    }
}

extension ExpertsPerToken {
    /// An integer for fixed K, a string for auto.
    var jsonValue: Any {
        switch self {
        case .fixed(let k): k
        case .configured: "configured"
        case .auto: description
        }
    }
}

/// One readable line at the edge for any typed error from the layers below.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ error: Error) {
        description = "\(error)"
    }
}
