import ArgumentParser
import JindouCommandLine
import Foundation
import JindouAdmin
import JindouModel
import JindouRouting
import JindouTemplates
import JindouTokenizer

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat interactively; answers stream to the terminal.",
        discussion: """
            Type a message and press Enter. /reset starts over, /exit (or end of input) quits.
            With --model the engine runs in-process; with --coordinator (or $JINDOU_COORDINATOR) a cluster answers.
            Example: jindouctl chat --coordinator http://127.0.0.1:8080 --system "Be brief." --no-thinking
            """
    )

    @Option(help: "Checkpoint directory; runs the engine in-process.")
    var model: String?

    @Option(help: "Coordinator URL (default: $JINDOU_COORDINATOR).")
    var coordinator: String?

    @Option(name: .customLong("token-file"), help: "Cluster secret for --coordinator.")
    var tokenFile: String?

    @OptionGroup var tls: TLSOptions

    @Option(help: "System prompt.")
    var system: String?

    @Option(name: .customLong("max-tokens"), help: "Most tokens per answer (default: as many as fit the model's context).")
    var maxTokens: Int?

    @Option(help: "Sampling temperature (0 = greedy).")
    var temperature: Float = 0.7

    @Option(help: "Seed for reproducible sampling.")
    var seed: UInt64?

    @Option(name: .customLong("experts-per-token"), help: "Routed experts per token: an integer, 'auto' or 'auto:T'.")
    var expertsPerToken: String?

    @Flag(name: .customLong("no-thinking"), help: "Ask the template to skip reasoning (enable_thinking=false).")
    var noThinking = false

    func validate() throws {
        if model != nil && coordinator != nil { throw ValidationError("give either --model or --coordinator") }
        if model == nil && coordinator == nil && ProcessInfo.processInfo.environment["JINDOU_COORDINATOR"] == nil {
            throw ValidationError("give --model DIR or --coordinator URL (or set JINDOU_COORDINATOR)")
        }
        if let e = expertsPerToken, ExpertsPerToken(parsing: e) == nil { throw ValidationError("bad --experts-per-token '\(e)'") }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
    }

    /// How the chat talks to a model: in-process or through a coordinator.
    struct Backend {
        /// Prompt + completion tokens the model accepts.
        var contextLength: Int
        /// Tokens of `messages` rendered by the chat template (with the generation prompt).
        var promptTokens: ([[String: String]]) async throws -> Int
        /// Streams the answer to `messages` to stdout and returns it.
        var answer: ([[String: String]], Int) async throws -> String
    }

    func run() async throws {
        let backend = try await makeBackend()
        let initial: [[String: String]] = system.map { [["role": "system", "content": $0]] } ?? []
        var messages = initial
        let interactive = isatty(STDIN_FILENO) != 0
        while true {
            if interactive { emit("> ") }
            guard let line = readLine() else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/exit" { break }
            if text == "/reset" {
                messages = initial
                continue
            }
            messages.append(["role": "user", "content": text])
            do {
                let room = try await fitToContext(&messages, backend: backend)
                let reply = try await backend.answer(messages, min(maxTokens ?? room, room))
                emit("\n")
                messages.append(["role": "assistant", "content": reply])
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                // Scripts piping a conversation in learn that it failed.
                if !interactive { throw ExitCode.failure }
                messages.removeLast()
            }
        }
    }

    /// Drops the oldest turns (never the system prompt or the new message) until the prompt
    /// leaves room for an answer; returns how many tokens the answer may have.
    func fitToContext(_ messages: inout [[String: String]], backend: Backend) async throws -> Int {
        var dropped = 0
        while true {
            let used = try await backend.promptTokens(messages)
            if used < backend.contextLength {
                if dropped > 0 {
                    FileHandle.standardError.write(Data("(dropped the \(dropped) oldest message\(dropped == 1 ? "" : "s") to fit the model's \(backend.contextLength)-token context)\n".utf8))
                }
                return backend.contextLength - used
            }
            // The oldest message after the system prompt, unless it is the new one.
            guard let oldest = messages.indices.first(where: { messages[$0]["role"] != "system" }), oldest < messages.count - 1 else {
                throw CLIError(message: "this message needs \(used) prompt tokens, but the model's context is \(backend.contextLength) tokens; shorten it (or /reset)")
            }
            messages.remove(at: oldest)
            dropped += 1
        }
    }

    func makeBackend() async throws -> Backend {
        let extra: [String: TemplateValue] = noThinking ? ["enable_thinking": .bool(false)] : [:]
        if let model {
            let engine: InferenceEngine
            let side: (Tokenizer, ChatTemplate?, [String: String], Set<Int>)
            do {
                engine = try InferenceEngine.load(directory: model, prefault: true)
                side = try textSide(of: model)
            } catch let error as CLIError { throw error } catch { throw CLIError(error) }
            guard let template = side.1 else { throw CLIError(message: "\(model) has no chat template") }
            let render: ([[String: String]]) throws -> [Int] = { messages in
                let values = messages.map { m in TemplateValue.object(TemplateObject(m.map { ($0.key, .string($0.value)) }.sorted { $0.0 > $1.0 })) }
                return side.0.encode(try template.render(messages: values, addGenerationPrompt: true, extra: extra, specialTokens: side.2))
            }
            return Backend(
                contextLength: engine.description.maxPositionEmbeddings,
                promptTokens: { try render($0).count },
                answer: { messages, limit in
                    let printer = StreamPrinter(tokenizer: side.0, echo: true)
                    _ = try await engine.generate(GenerationRequest(
                        promptTokenIDs: try render(messages), maxNewTokens: limit,
                        sampling: SamplingParameters(temperature: temperature, seed: seed),
                        expertsPerToken: expertsPerToken.flatMap { ExpertsPerToken(parsing: $0) } ?? .configured,
                        stopTokenIDs: Set(engine.description.eosTokenIDs).union(side.3)), onToken: { printer.token($0) })
                    return printer.finish()
                })
        }
        let url = coordinator ?? ProcessInfo.processInfo.environment["JINDOU_COORDINATOR"]!
        let client = try makeAdminClient(url: url, tokenFile: tokenFile, tls: tls)
        let served: ModelList.Model
        do {
            guard let first = try await client.get("v1/models", as: ModelList.self).data.first else {
                throw CLIError(message: "the coordinator at \(url) serves no model")
            }
            served = first
        } catch let error as CLIError { throw error } catch { throw CLIError(error) }
        let kwargs: [String: Any] = noThinking ? ["enable_thinking": false] : [:]
        return Backend(
            contextLength: served.maxModelLength ?? Int.max,
            promptTokens: { messages in
                let body: [String: Any] = ["model": served.id, "messages": messages, "chat_template_kwargs": kwargs]
                let data = try await client.send("POST", "tokenize", body: try JSONSerialization.data(withJSONObject: body))
                return try JSONDecoder().decode(TokenCount.self, from: data).count
            },
            answer: { messages, limit in
                var body: [String: Any] = ["model": served.id, "messages": messages, "max_tokens": limit, "temperature": temperature]
                if let seed { body["seed"] = seed }
                if let e = expertsPerToken { body["experts_per_token"] = Int(e) ?? e }
                if noThinking { body["chat_template_kwargs"] = kwargs }
                return try await streamCompletion(client: client, path: "v1/chat/completions", body: body, echo: true).text
            })
    }
}

/// `POST /tokenize`'s answer.
struct TokenCount: Decodable {
    let count: Int
}
