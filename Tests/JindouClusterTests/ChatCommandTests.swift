import Foundation
import JindouOutputParsing
import JindouAdmin
import JindouModel
import JindouTemplates
import JindouTestSupport
import JindouTokenizer
import Testing

/// The README's `jindouctl chat --coordinator …` against the bundled model, as a new user
/// runs it: answers fit the model's context, long histories are trimmed with a message,
/// and a failure exits non-zero when the input is not a terminal.
@Suite("jindouctl chat against a cluster", .serialized)
struct ChatCommandTests {
    let fixture = "qwen3-moe-tiny"

    /// Runs `jindouctl chat ARGS` with `input` on stdin: (exit status, stdout, stderr).
    func chat(_ arguments: [String], input: String) throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = try Executable("jindouctl").url
        process.arguments = ["chat"] + arguments
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        // stderr carries a few short lines: it cannot fill its pipe while stdout is read.
        let out = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, out, errors)
    }

    @Test func theFirstAnswerUsesTheRestOfTheContextAndTokenizeCountsTheChat() async throws {
        let cluster = try LocalCluster(fixture: fixture, workers: 1)
        defer { cluster.stop() }
        let directory = Fixtures.path(fixture)
        let tokenizer = try Tokenizer(contentsOf: directory + "/tokenizer.json")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/tokenizer_config.json"))) as! [String: Any]
        let template = try ChatTemplate(config["chat_template"] as! String)
        let messages: [TemplateValue] = [.object(TemplateObject([("role", .string("user")), ("content", .string("Hello"))]))]
        let prompt = tokenizer.encode(try template.render(messages: messages, addGenerationPrompt: true))

        // POST /tokenize renders the chat as the completion endpoint would.
        let (status, counted) = try await cluster.post("tokenize", #"{"model": "qwen3-moe-tiny", "messages": [{"role": "user", "content": "Hello"}]}"#)
        #expect(status == 200)
        guard case .int(let count)? = counted["count"], case .int(let context)? = counted["max_model_len"] else {
            Issue.record("tokenize answered \(counted)")
            return
        }
        #expect(count == prompt.count)

        let (exit, out, errors) = try chat(["--coordinator", cluster.url, "--temperature", "0"], input: "Hello\n")
        #expect(exit == 0, "\(errors)")
        #expect(!errors.contains("error"), "\(errors)")
        let engine = try await EngineCache.shared.engine(fixture)
        let stop = Set([tokenizer.id(of: config["eos_token"] as! String)!]).union(engine.description.eosTokenIDs)
        let expected = try await engine.generate(GenerationRequest(promptTokenIDs: prompt, maxNewTokens: context - prompt.count,
                                                                   stopTokenIDs: stop))
        // The server splits the answer with the template's reasoning parser (qwen3); the chat
        // prints the reasoning, then on a new line the content.
        let raw = tokenizer.decode(expected.tokenIDs, skipSpecialTokens: true)
        let answer = AssistantOutputParser.parse(raw, format: try OutputFormat.named(toolCallParser: nil, reasoningParser: "qwen3"),
                                                 tools: [], parseToolCalls: false, makeID: { "\($0)" })
        let shown = (answer.reasoning ?? "") + (answer.reasoning != nil && answer.content != nil ? "\n" : "") + (answer.content ?? "")
        #expect(out == shown + "\n")
    }

    @Test func longHistoriesAreTrimmedAndFailuresExitNonZero() async throws {
        let cluster = try LocalCluster(fixture: fixture, workers: 1)
        defer { cluster.stop() }
        // Each turn ~70 prompt tokens and a 40-token answer: the 256-token context holds two.
        let turn = String(repeating: "hello world ", count: 6)
        let (exit, _, errors) = try chat(["--coordinator", cluster.url, "--temperature", "0", "--max-tokens", "40"],
                                         input: String(repeating: turn + "\n", count: 4))
        #expect(exit == 0, "\(errors)")
        #expect(errors.contains("dropped the"), "\(errors)")
        #expect(!errors.contains("error"), "\(errors)")

        // One message longer than the whole context cannot be answered: a clear error and a non-zero exit.
        let (failed, _, message) = try chat(["--coordinator", cluster.url], input: String(repeating: "hello world ", count: 400) + "\n")
        #expect(failed != 0)
        #expect(message.contains("the model's context is 256 tokens"), "\(message)")
    }
}
