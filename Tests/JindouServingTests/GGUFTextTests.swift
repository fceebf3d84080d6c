import Foundation
import JindouModel
import JindouServing
import JindouTestSupport
import Testing

/// A GGUF file's text side (tokenizer, chat template, special tokens) equals its checkpoint's.
@Suite("GGUF tokenizer and chat template")
struct GGUFTextTests {
    static let fixture = "qwen3-moe-tiny-sharded"
    /// llama.cpp's converter wrote it from the fixture (tools/fixture_gguf.py).
    static let llamaCppFile = Fixtures.path("gguf/qwen3-moe-tiny-sharded-f32.gguf")

    /// Texts of the tokenizer goldens (English, CJK, code, emoji, whitespace runs, special tokens).
    static func corpus() throws -> [String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizers/qwen-style/golden.json")))
        let cases = (try JSONSerialization.jsonObject(with: data) as! [String: Any])["cases"] as! [[String: Any]]
        return cases.map { $0["text"] as! String } + ["<|im_start|>user\nHello 世界<|im_end|>\n", "<|endoftext|><|endoftext|>x"]
    }

    @Test func llamaCppFileTokenizesLikeTokenizerJSON() throws {
        let description = try GGUFCheckpoint(path: Self.llamaCppFile).description
        let gguf = try ServingText(directory: Self.llamaCppFile, description: description)
        let json = try ServingText(directory: Fixtures.path(Self.fixture), description: description)
        let (a, b) = (try #require(gguf.tokenizer), try #require(json.tokenizer))
        let corpus = try Self.corpus()
        #expect(corpus.count > 40)
        for text in corpus {
            let ids = b.encode(text, addSpecialTokens: true)
            #expect(a.encode(text, addSpecialTokens: true) == ids, "\(text.debugDescription)")
            #expect(a.decode(ids) == b.decode(ids) && a.decode(ids, skipSpecialTokens: true) == b.decode(ids, skipSpecialTokens: true))
        }
        #expect(gguf.specialTokens["eos_token"] == json.specialTokens["eos_token"])
        #expect(gguf.specialTokens["pad_token"] == json.specialTokens["pad_token"])
        #expect(gguf.stopTokenIDs == json.stopTokenIDs)
        #expect(gguf.chatTemplate != nil && json.chatTemplate != nil)
    }

    @Test("jindouctl quantize writes the tokenizer metadata llama.cpp's converter writes")
    func quantizeWritesLlamaCppTokenizerMetadata() throws {
        let directory = NSTemporaryDirectory() + "jindou-gguf-text-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let out = directory + "/m.gguf"
        let run = try Executable("jindouctl").run(["quantize", "--to", "q8_0", "--model", Fixtures.path(Self.fixture), "--out", out])
        #expect(run.status == 0, "\(run.stderr)")
        let ours = try GGUFFile(path: out), theirs = try GGUFFile(path: Self.llamaCppFile)
        let keys = theirs.metadataKeys.filter { $0.hasPrefix("tokenizer.") }
        #expect(keys.count >= 7)
        #expect(ours.metadataKeys.filter { $0.hasPrefix("tokenizer.") } == keys)
        for key in keys { #expect(ours.metadata[key] == theirs.metadata[key], "\(key)") }

        // Without tokenizer.json: no tokenizer, the vocabulary size only.
        let bare = directory + "/bare"
        try FileManager.default.createDirectory(atPath: bare, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors.index.json"] + (try FileManager.default.contentsOfDirectory(atPath: Fixtures.path(Self.fixture))
            .filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix("golden") }) {
            try FileManager.default.copyItem(atPath: Fixtures.path(Self.fixture) + "/\(name)", toPath: bare + "/\(name)")
        }
        let bareOut = directory + "/bare.gguf"
        let bareRun = try Executable("jindouctl").run(["quantize", "--to", "q8_0", "--model", bare, "--out", bareOut])
        #expect(bareRun.status == 0, "\(bareRun.stderr)")
        let bareFile = try GGUFFile(path: bareOut)
        #expect(bareFile.metadata["tokenizer.ggml.model"] == .string("none") && bareFile.metadata["qwen3moe.vocab_size"] == .uint(320))
        let text = try ServingText(directory: bareOut, description: try GGUFCheckpoint(path: bareOut).description)
        #expect(text.tokenizer == nil)
    }

    @Test func unsupportedPreTokenizerIsNamed() throws {
        let file = try GGUFFile(path: Self.llamaCppFile)
        var writer = GGUFWriter()
        writer.metadata = [("general.architecture", .string("qwen3moe")), ("tokenizer.ggml.model", .string("gpt2")),
                           ("tokenizer.ggml.pre", .string("llama-bpe")),
                           ("tokenizer.ggml.tokens", .strings(file.metadata["tokenizer.ggml.tokens"]!.array!.map { $0.string! }))]
        let path = NSTemporaryDirectory() + "jindou-gguf-pre-\(UUID().uuidString).gguf"
        try writer.write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let description = try GGUFCheckpoint(path: Self.llamaCppFile).description
        do {
            _ = try ServingText(directory: path, description: description)
            Issue.record("llama-bpe accepted")
        } catch {
            #expect("\(error)".contains("tokenizer.ggml.pre 'llama-bpe' is not supported (supported: glm4, qwen2)"), "\(error)")
        }
    }
}
