import ArgumentParser
import JindouCommandLine
import Foundation
import JindouAdmin
import JindouModel
import JindouNumerics
import JindouRouting
import JindouWire
import JindouServing
import JindouTemplates

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate tokens from a prompt of token ids.",
        discussion: """
            With --model DIR (or FILE.gguf) the single-process engine runs in this process; with --coordinator URL
            (or JINDOU_COORDINATOR) a running cluster generates.
            Examples:
              jindouctl generate --model Tests/Fixtures/qwen3-moe-tiny --prompt-ids 1,2,3 --max-new-tokens 8 --json
              jindouctl generate --coordinator http://127.0.0.1:8080 --prompt-ids 1,2,3 --json
            """
    )

    @Option(help: "Checkpoint directory (config.json + safetensors) or GGUF file; runs the engine in-process.")
    var model: String?

    @Option(help: "URL of a running coordinator (default: $JINDOU_COORDINATOR).")
    var coordinator: String?

    @Option(name: .customLong("token-file"), help: "Cluster secret for --coordinator (default: $JINDOU_TOKEN_FILE).")
    var tokenFile: String?

    @OptionGroup var tls: TLSOptions

    @Option(name: .customLong("prompt-ids"), help: "Comma-separated prompt token ids, e.g. 1,2,3.")
    var promptIDs: String?

    @Option(help: "Prompt text (tokenized with the model's tokenizer); the answer streams to the terminal.")
    var prompt: String?

    @Option(name: .customLong("image"), help: ArgumentHelp(
        "An image (PNG or JPEG) to put before --prompt in one user chat message; repeatable. Vision-language models only.",
        valueName: "FILE"))
    var images: [String] = []

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

    @Option(name: .customLong("expert-format"),
            help: "With --model: re-encode the routed experts after loading, a GGUF block format Jindou encodes (q8_0, q6_k, q5_k, q4_k, q4_0, iq4_xs, …).")
    var expertFormat: String?

    @Option(name: .customLong("dense-format"),
            help: "With --model: re-encode attention, dense/shared MLPs and the LM head too, in a GGUF block format Jindou encodes (embeddings and routers stay).")
    var denseFormat: String?

    @Option(help: "With --model: speculative decoding, off, ngram (prompt-lookup drafts) or mtp (the checkpoint's MTP layer). With --coordinator: 'off' opts this request out of the cluster's.")
    var speculative: String?

    @Option(name: .customLong("draft-tokens"), help: "With --model --speculative ngram|mtp: most drafted tokens per step.")
    var draftTokens: Int = 4

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
        guard (promptIDs == nil) != (prompt == nil) else { throw ValidationError("give exactly one of --prompt-ids or --prompt") }
        if !images.isEmpty && prompt == nil { throw ValidationError("--image needs --prompt (the text that goes with the images)") }
        if let promptIDs, (try? parsedPrompt()) == nil {
            throw ValidationError("--prompt-ids must be a comma-separated list of non-negative integers, got '\(promptIDs)'")
        }
        guard autoThreshold > 0, autoThreshold <= 1 else { throw ValidationError("--auto-threshold must be in (0, 1]") }
        if let expertFormat, !(BlockFormat(rawValue: expertFormat.lowercased())?.canQuantize ?? false) {
            throw ValidationError("--expert-format must be a block format Jindou encodes: \(BlockFormat.allCases.filter(\.canQuantize).map(\.rawValue).joined(separator: ", "))")
        }
        if let denseFormat, !(BlockFormat(rawValue: denseFormat.lowercased())?.canQuantize ?? false) {
            throw ValidationError("--dense-format must be a block format Jindou encodes: \(BlockFormat.allCases.filter(\.canQuantize).map(\.rawValue).joined(separator: ", "))")
        }
        if let speculative {
            guard let mode = SpeculationMode(rawValue: speculative) else { throw ValidationError("--speculative must be off, ngram or mtp") }
            if model == nil && mode != .off { throw ValidationError("with --coordinator, --speculative only takes 'off' (the cluster's setting applies)") }
        }
        guard (1...64).contains(draftTokens) else { throw ValidationError("--draft-tokens must be in 1…64") }
        if let text = expertsPerToken, ExpertsPerToken(parsing: text, defaultThreshold: autoThreshold) == nil {
            throw ValidationError("--experts-per-token must be a positive integer, 'auto' or 'auto:THRESHOLD', got '\(text)'")
        }
    }

    /// The in-process engine for `--model`, with `--expert-format` / `--dense-format`.
    func loadEngine(_ model: String) throws -> InferenceEngine {
        try InferenceEngine.load(directory: model, prefault: true, expertFormat: expertFormat.flatMap { BlockFormat(rawValue: $0.lowercased()) },
                                 denseFormat: denseFormat.flatMap { BlockFormat(rawValue: $0.lowercased()) },
                                 multiTokenPrediction: speculation.mode == .mtp)
    }

    func parsedPrompt() throws -> [Int] {
        let parts = (promptIDs ?? "").split(separator: ",", omittingEmptySubsequences: false)
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
                ignoreEOS: ignoreEOS, emitLogits: emitLogits, speculative: speculative == "off" ? false : nil)
        }
    }

    /// `--speculative` / `--draft-tokens` for the in-process engine.
    var speculation: SpeculationOptions {
        SpeculationOptions(mode: speculative.flatMap(SpeculationMode.init(rawValue:)) ?? .off, draftTokens: draftTokens)
    }

    func run() async throws {
        if let prompt, !images.isEmpty { return try await runImageChat(prompt) }
        if let prompt { return try await runText(prompt) }
        let body = try self.body
        let report: GenerationReport
        do {
            if let model {
                let engine = try loadEngine(model)
                let result = try await engine.generate(body.request, speculation: speculation)
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
            if let s = report.speculation {
                FileHandle.standardError.write(Data(String(format: "speculation: %d drafted, %d accepted (%.0f%%), %.2f tokens per step\n",
                                                           s.drafted, s.accepted, 100 * s.acceptanceRate, s.tokensPerStep).utf8))
            }
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

extension Generate {
    /// `--prompt TEXT`: tokenize, generate, stream the text.
    func runText(_ prompt: String) async throws {
        let experts = expertsPerToken.flatMap { ExpertsPerToken(parsing: $0, defaultThreshold: autoThreshold) }
        if let model {
            do {
                let engine = try loadEngine(model)
                let (tokenizer, _, _, tokenizerStops) = try textSide(of: model)
                let ids = tokenizer.encode(prompt, addSpecialTokens: true)
                let printer = StreamPrinter(tokenizer: tokenizer, echo: !json)
                let result = try await engine.generate(GenerationRequest(
                    promptTokenIDs: ids, maxNewTokens: maxNewTokens,
                    sampling: SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed),
                    expertsPerToken: experts ?? .configured,
                    stopTokenIDs: ignoreEOS ? [] : Set(engine.description.eosTokenIDs).union(tokenizerStops)),
                    onToken: { printer.token($0) })
                let text = printer.finish()
                if json {
                    var report = try JSONSerialization.jsonObject(with: JSONEncoder().encode(
                        GenerationReport(result, requested: experts ?? .configured, description: engine.description))) as! [String: Any]
                    report["text"] = text
                    report["prompt_ids"] = ids
                    FileHandle.standardOutput.write(try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]) + Data("\n".utf8))
                } else {
                    emit("\n")
                }
            } catch let error as CLIError { throw error } catch { throw CLIError(error) }
            return
        }
        try await askCoordinator(path: "v1/completions", ["prompt": prompt])
    }

    /// Streams an OpenAI request to the coordinator (model, sampling and experts filled in)
    /// and prints the answer, or one JSON object with `--json`.
    func askCoordinator(path: String, _ fields: [String: Any]) async throws {
        let client = try makeAdminClient(url: coordinatorURL!, tokenFile: tokenFile, tls: tls)
        let models: ModelList
        do { models = try await client.get("v1/models", as: ModelList.self) } catch { throw CLIError(error) }
        var body: [String: Any] = ["model": models.data.first?.id ?? "", "max_tokens": maxNewTokens, "temperature": temperature,
                                   "top_p": topP, "top_k": topK, "ignore_eos": ignoreEOS]
        body.merge(fields) { $1 }
        if let seed { body["seed"] = seed }
        if let text = expertsPerToken { body["experts_per_token"] = Int(text) ?? text }
        do {
            let answer = try await streamCompletion(client: client, path: path, body: body, echo: !json)
            if json {
                let object: [String: Any] = ["text": answer.text, "finish_reason": answer.finish, "usage": answer.usage]
                FileHandle.standardOutput.write(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) + Data("\n".utf8))
            } else {
                emit("\n")
            }
        } catch let error as CLIError { throw error } catch { throw CLIError(error) }
    }
}

extension Generate {
    /// `--image FILE… --prompt TEXT`: one user message (images, then the text) through the
    /// chat template, exactly as the OpenAI chat endpoint builds it.
    func runImageChat(_ prompt: String) async throws {
        let experts = expertsPerToken.flatMap { ExpertsPerToken(parsing: $0, defaultThreshold: autoThreshold) }
        if let model {
            do {
                let engine = try loadEngine(model)
                let text = try ServingText(directory: model, description: engine.description)
                guard let vision = try ServingVision(directory: model, description: engine.description, text: text) else {
                    throw CLIError(message: "\(model) is not a vision-language model (\(engine.description.architecture.rawValue))")
                }
                let parts = images.map { TemplateValue.object(TemplateObject([("type", .string("image")), ("image", .string($0))])) }
                    + [.object(TemplateObject([("type", .string("text")), ("text", .string(prompt))]))]
                let message = TemplateValue.object(TemplateObject([("role", .string("user")), ("content", .array(parts))]))
                // The files are named by the person running the command: any readable path.
                let chat = try ChatPrompt.build(messages: [message], text: text, vision: vision, engine: engine,
                                                policy: ImageSourcePolicy(localDirectory: "/"))
                let printer = StreamPrinter(tokenizer: text.tokenizer!, echo: !json)
                var request = GenerationRequest(
                    promptTokenIDs: chat.tokens, maxNewTokens: maxNewTokens,
                    sampling: SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed),
                    expertsPerToken: experts ?? .configured, stopTokenIDs: ignoreEOS ? [] : text.stopTokenIDs)
                request.multimodal = chat.multimodal
                let result = try await engine.generate(request, onToken: { printer.token($0) })
                let answer = printer.finish()
                if json {
                    var report = try JSONSerialization.jsonObject(with: JSONEncoder().encode(
                        GenerationReport(result, requested: experts ?? .configured, description: engine.description))) as! [String: Any]
                    report["text"] = answer
                    report["prompt_ids"] = chat.tokens
                    FileHandle.standardOutput.write(try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys]) + Data("\n".utf8))
                } else {
                    emit("\n")
                }
            } catch let error as CLIError { throw error } catch { throw CLIError(error) }
            return
        }
        // Through a coordinator: the images travel as data: URLs in an OpenAI chat request.
        var parts: [[String: Any]] = []
        for path in images {
            guard let data = FileManager.default.contents(atPath: path) else { throw CLIError(message: "cannot read image \(path)") }
            let type = path.lowercased().hasSuffix(".png") ? "png" : "jpeg"
            parts.append(["type": "image_url", "image_url": ["url": "data:image/\(type);base64," + data.base64EncodedString()]])
        }
        parts.append(["type": "text", "text": prompt])
        try await askCoordinator(path: "v1/chat/completions", ["messages": [["role": "user", "content": parts]]])
    }
}

/// `GET /v1/models`.
struct ModelList: Decodable {
    struct Model: Decodable {
        let id: String
        /// Prompt + completion tokens the server accepts per request.
        let maxModelLength: Int?
        enum CodingKeys: String, CodingKey {
            case id
            case maxModelLength = "max_model_len"
        }
    }
    let data: [Model]
}
