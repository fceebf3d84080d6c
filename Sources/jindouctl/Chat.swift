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

    @Option(name: .customLong("max-tokens"), help: "Most tokens per answer.")
    var maxTokens: Int = 256

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
    }

    func run() async throws {
        var messages: [[String: String]] = system.map { [["role": "system", "content": $0]] } ?? []
        let answer: ([[String: String]]) async throws -> String
        if let model {
            let engine: InferenceEngine
            let side: (Tokenizer, ChatTemplate?, [String: String], Set<Int>)
            do {
                engine = try InferenceEngine.load(directory: model, prefault: true)
                side = try textSide(of: model)
            } catch let error as CLIError { throw error } catch { throw CLIError(error) }
            guard let template = side.1 else { throw CLIError(message: "\(model) has no chat template") }
            answer = { messages in
                let values = messages.map { m in TemplateValue.object(TemplateObject(m.map { ($0.key, .string($0.value)) }.sorted { $0.0 > $1.0 })) }
                let text = try template.render(messages: values, addGenerationPrompt: true,
                                               extra: noThinking ? ["enable_thinking": TemplateValue.bool(false)] : [:], specialTokens: side.2)
                let printer = StreamPrinter(tokenizer: side.0, echo: true)
                _ = try await engine.generate(GenerationRequest(
                    promptTokenIDs: side.0.encode(text), maxNewTokens: maxTokens,
                    sampling: SamplingParameters(temperature: temperature, seed: seed),
                    expertsPerToken: expertsPerToken.flatMap { ExpertsPerToken(parsing: $0) } ?? .configured,
                    stopTokenIDs: Set(engine.description.eosTokenIDs).union(side.3)), onToken: { printer.token($0) })
                return printer.finish()
            }
        } else {
            let url = coordinator ?? ProcessInfo.processInfo.environment["JINDOU_COORDINATOR"]!
            let client = try makeAdminClient(url: url, tokenFile: tokenFile, tls: tls)
            let name: String
            do { name = try await client.get("v1/models", as: ModelList.self).data.first?.id ?? "" } catch { throw CLIError(error) }
            answer = { messages in
                var body: [String: Any] = ["model": name, "messages": messages, "max_tokens": maxTokens, "temperature": temperature]
                if let seed { body["seed"] = seed }
                if let e = expertsPerToken { body["experts_per_token"] = Int(e) ?? e }
                if noThinking { body["chat_template_kwargs"] = ["enable_thinking": false] }
                return try await streamCompletion(client: client, path: "v1/chat/completions", body: body, echo: true).text
            }
        }
        let interactive = isatty(STDIN_FILENO) != 0
        while true {
            if interactive { emit("> ") }
            guard let line = readLine() else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/exit" { break }
            if text == "/reset" {
                messages = system.map { [["role": "system", "content": $0]] } ?? []
                continue
            }
            messages.append(["role": "user", "content": text])
            do {
                let reply = try await answer(messages)
                emit("\n")
                messages.append(["role": "assistant", "content": reply])
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                messages.removeLast()
            }
        }
    }
}
