import Foundation
import JindouModel
import JindouTemplates
import JindouTestSupport
import JindouTokenizer
import Testing

/// `jindouctl generate --prompt` and `jindouctl chat` with the in-process engine: text in,
/// the model's own tokenizer and chat template, streamed text out.
@Suite("jindouctl text commands")
struct TextCommandLineTests {
    @Test func generateWithATextPrompt() async throws {
        let fixture = "qwen3-moe-tiny"
        let tokenizer = try Tokenizer(contentsOf: Fixtures.path(fixture) + "/tokenizer.json")
        let output = try Executable("jindouctl").run(["generate", "--model", Fixtures.path(fixture), "--prompt", "Hello 世界",
                                                      "--max-new-tokens", "6", "--ignore-eos", "--json"])
        #expect(output.status == 0, "\(output.stderr)")
        let object = try JSONSerialization.jsonObject(with: output.stdout) as! [String: Any]
        let ids = tokenizer.encode("Hello 世界", addSpecialTokens: true)
        #expect(object["prompt_ids"] as? [Int] == ids)
        let engine = try await EngineCache.shared.engine(fixture)
        let expected = try await engine.generate(GenerationRequest(promptTokenIDs: ids, maxNewTokens: 6, stopTokenIDs: []))
        #expect(object["token_ids"] as? [Int] == expected.tokenIDs)
        #expect(object["text"] as? String == tokenizer.decode(expected.tokenIDs))
    }

    @Test func chatRendersTheTemplateAndStreamsTheAnswer() async throws {
        let fixture = "glm4-moe-tiny"
        let directory = Fixtures.path(fixture)
        let tokenizer = try Tokenizer(contentsOf: directory + "/tokenizer.json")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/tokenizer_config.json"))) as! [String: Any]
        let template = try ChatTemplate(config["chat_template"] as! String)
        let rendered = try template.render(messages: [.object(TemplateObject([("role", .string("user")), ("content", .string("Hi"))]))],
                                           addGenerationPrompt: true)
        let engine = try await EngineCache.shared.engine(fixture)
        let stop = Set([tokenizer.id(of: config["eos_token"] as! String)!])
        let expected = try await engine.generate(GenerationRequest(promptTokenIDs: tokenizer.encode(rendered), maxNewTokens: 5, stopTokenIDs: stop))

        let ctl = try Executable("jindouctl")
        let process = Process()
        process.executableURL = ctl.url
        process.arguments = ["chat", "--model", directory, "--max-tokens", "5", "--temperature", "0"]
        let input = Pipe(), out = Pipe()
        process.standardInput = input
        process.standardOutput = out
        try process.run()
        input.fileHandleForWriting.write(Data("Hi\n/exit\n".utf8))
        try input.fileHandleForWriting.close()
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(stdout == tokenizer.decode(expected.tokenIDs, skipSpecialTokens: true) + "\n")
    }
}
