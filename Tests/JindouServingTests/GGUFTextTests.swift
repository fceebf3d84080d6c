import Foundation
import JindouModel
import JindouServing
import JindouTemplates
import JindouTokenizer
import JindouTestSupport
import Testing

/// A GGUF file's text side (tokenizer, chat template, special tokens) equals its checkpoint's.
@Suite("GGUF tokenizer and chat template")
struct GGUFTextTests {
    static let fixture = "qwen3-moe-tiny-sharded"
    /// llama.cpp's converter wrote it from the fixture (tools/fixture_gguf.py).
    static let llamaCppFile = Fixtures.path("gguf/qwen3-moe-tiny-sharded-f32.gguf")
    /// Fixtures with a llama.cpp-converted `gguf/<fixture>-f32.gguf`: pre-tokenizers qwen2 and glm4.
    static let llamaCppConverted = ["qwen3-moe-tiny-sharded", "glm4-moe-tiny"]

    /// Texts of the tokenizer goldens (English, CJK, code, emoji, whitespace runs, special
    /// tokens), and Qwen's and GLM's chat markup.
    static func corpus() throws -> [String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tokenizers/qwen-style/golden.json")))
        let cases = (try JSONSerialization.jsonObject(with: data) as! [String: Any])["cases"] as! [[String: Any]]
        return cases.map { $0["text"] as! String } + [
            "<|im_start|>user\nHello 世界<|im_end|>\n", "<|endoftext|><|endoftext|>x",
            "[gMASK]<sop><|system|>\nBe brief.<|user|>\nHello 世界 12345<|assistant|>\n<think></think>\nHi<|observation|>",
            "<tool_call>f\n<arg_key>x</arg_key>\n<arg_value>1234567</arg_value>\n</tool_call>",
        ]
    }

    @Test(arguments: llamaCppConverted)
    func llamaCppFileTokenizesLikeTokenizerJSON(fixture: String) throws {
        let path = Fixtures.path("gguf/\(fixture)-f32.gguf")
        let description = try GGUFCheckpoint(path: path).description
        let gguf = try ServingText(directory: path, description: description)
        let json = try ServingText(directory: Fixtures.path(fixture), description: description)
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

    /// GLM: `_set_vocab_glm`'s BOS `[gMASK]`, EOT `<|user|>`, unknown `<|endoftext|>`,
    /// EOM `<|observation|>` after tokenizer_config.json's EOS and padding, in that order.
    @Test("jindouctl quantize writes the tokenizer metadata llama.cpp's converter writes", arguments: llamaCppConverted)
    func quantizeWritesLlamaCppTokenizerMetadata(fixture: String) throws {
        let directory = Scratch.directory + "jindou-gguf-text-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let out = directory + "/m.gguf"
        let run = try Executable("jindouctl").run(["quantize", "--experts", "q8_0", "--model", Fixtures.path(fixture), "--out", out])
        #expect(run.status == 0, "\(run.stderr)")
        let ours = try GGUFFile(path: out), theirs = try GGUFFile(path: Fixtures.path("gguf/\(fixture)-f32.gguf"))
        let keys = theirs.metadataKeys.filter { $0.hasPrefix("tokenizer.") }
        #expect(keys.count >= 7)
        #expect(ours.metadataKeys.filter { $0.hasPrefix("tokenizer.") } == keys)
        for key in keys { #expect(ours.metadata[key] == theirs.metadata[key], "\(key)") }
        guard fixture == Self.fixture else { return }

        // Without tokenizer.json: no tokenizer, the vocabulary size only.
        let bare = directory + "/bare"
        try FileManager.default.createDirectory(atPath: bare, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors.index.json"] + (try FileManager.default.contentsOfDirectory(atPath: Fixtures.path(Self.fixture))
            .filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix("golden") }) {
            try FileManager.default.copyItem(atPath: Fixtures.path(Self.fixture) + "/\(name)", toPath: bare + "/\(name)")
        }
        let bareOut = directory + "/bare.gguf"
        let bareRun = try Executable("jindouctl").run(["quantize", "--experts", "q8_0", "--model", bare, "--out", bareOut])
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
        let path = Scratch.directory + "jindou-gguf-pre-\(UUID().uuidString).gguf"
        try writer.write(to: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let description = try GGUFCheckpoint(path: Self.llamaCppFile).description
        do {
            _ = try ServingText(directory: path, description: description)
            Issue.record("llama-bpe accepted")
        } catch {
            #expect("\(error)".contains("tokenizer.ggml.pre 'llama-bpe' is not supported (supported: afmoe, deepseek-v3, exaone-moe, glm4, gpt-4o, hunyuan, minimax-m2, qwen2, qwen35)"), "\(error)")
        }
    }
}

/// A llama.cpp `deepseek2` file's text side: its `deepseek-v3` pre-tokenizer (three Split
/// regexes, no normaliser) and DeepSeek-V3.1's chat template, from the file's metadata alone.
@Suite("GGUF tokenizer and chat template: deepseek2")
struct GGUFDeepseekTextTests {
    /// Converted by llama.cpp from deepseek-v3-tiny with the tokenizer in gguf/tokenizers/deepseek.
    static let file = Fixtures.path("gguf/deepseek-v3-tiny-f32.gguf")
    static let tokenizerDirectory = Fixtures.path("gguf/tokenizers/deepseek")

    static func golden() throws -> TemplateValue {
        try JSONText.parse(Data(contentsOf: URL(fileURLWithPath: tokenizerDirectory + "/golden.json")))
    }

    @Test func tokenizesLikeTokenizers() throws {
        let description = try GGUFCheckpoint(path: Self.file).description
        let text = try ServingText(directory: Self.file, description: description)
        let tokenizer = try #require(text.tokenizer)
        let json = try Tokenizer(contentsOf: Self.tokenizerDirectory + "/tokenizer.json")
        let cases = try TokenizerGolden.load(directory: Self.tokenizerDirectory).cases
        #expect(cases.count > 40)
        for c in cases {
            #expect(tokenizer.encode(c.text) == c.ids, "\(c.text.debugDescription)")
            #expect(json.encode(c.text) == c.ids)
            #expect(tokenizer.decode(c.ids) == c.decoded && json.decode(c.ids) == c.decoded)
        }
        // add_bos_token: the BOS (id 0) leads an encoding with special tokens.
        #expect(tokenizer.encode("Hi", addSpecialTokens: true).first == 0)
        #expect(text.specialTokens["bos_token"] == "<｜begin▁of▁sentence｜>" && text.specialTokens["eos_token"] == "<｜end▁of▁sentence｜>")
        #expect(text.stopTokenIDs == [1])
    }

    @Test func chatTemplateRendersLikeTransformers() throws {
        let description = try GGUFCheckpoint(path: Self.file).description
        let text = try ServingText(directory: Self.file, description: description)
        let template = try #require(text.chatTemplate)
        guard case .object(let root) = try Self.golden(), case .array(let cases)? = root["chat"] else {
            Issue.record("malformed golden")
            return
        }
        #expect(cases.count >= 16)
        for case .object(let c) in cases {
            guard case .array(let messages)? = c["messages"], case .object(let options)? = c["options"] else { continue }
            let result = Result {
                try template.render(messages: messages, addGenerationPrompt: options["add_generation_prompt"]?.truthy ?? false,
                                    specialTokens: text.specialTokens)
            }
            switch (result, c["rendered"]) {
            case (.success(let rendered), .string(let expected)?): #expect(rendered == expected)
            case (.failure, nil): #expect(c["error"] != nil)
            default: Issue.record("\(c["name"].map { "\($0)" } ?? "?"): \(result) vs \(String(describing: c["rendered"]))")
            }
        }
    }
}

/// The tokenizers llama.cpp's converter wrote into the dots1, exaone-moe, afmoe and
/// GLM-4.7-Flash files (from the tokenizers tools/fixture_gguf.py staged): the file alone
/// tokenizes as the `tokenizers` library did on the tokenizer.json it came from.
@Suite("GGUF tokenizer: dots1, exaone-moe, afmoe, GLM-4.7-Flash, hunyuan-moe")
struct GGUFFamilyTokenizerTests {
    @Test(arguments: [("dots1-tiny-mha-f32.gguf", "dots1"), ("exaone-moe-tiny-f32.gguf", "exaone-moe"),
                      ("afmoe-tiny-every4-f32.gguf", "afmoe"), ("glm4-moe-lite-tiny-lead-f32.gguf", "glm4"),
                      ("hunyuan-moe-tiny-128-f32.gguf", "hunyuan"), ("glm-moe-dsa-tiny-f32.gguf", "glm4")])
    func tokenizesLikeTokenizers(file: String, staged: String) throws {
        let path = Fixtures.path("gguf/" + file)
        let text = try ServingText(directory: path, description: try GGUFCheckpoint(path: path).description)
        let tokenizer = try #require(text.tokenizer)
        let cases = try TokenizerGolden.load(directory: Fixtures.path("gguf/tokenizers/" + staged)).cases
        #expect(cases.count > 40)
        for c in cases {
            #expect(tokenizer.encode(c.text) == c.ids, "\(file): \(c.text.debugDescription)")
            #expect(tokenizer.decode(c.ids) == c.decoded && tokenizer.decode(c.ids, skipSpecialTokens: true) == c.decodedSkipSpecial)
        }
        #expect(!text.stopTokenIDs.isEmpty)
    }

    struct LlamaCppTokenized: Decodable {
        struct Case: Decodable { let text: String; let ids: [Int] }
        let tokenized: [Case]
    }

    /// The file's tokenizer gives llama.cpp's own ids (tools/llama_cpp_logits.c --tokenize on
    /// the same file): Trinity's digit grouping (`afmoe`), K-EXAONE's, Hunyuan's and the o200k
    /// regexes, ERNIE's SentencePiece vocabulary (`llama`: scored merges, byte fallback, a
    /// space before text that starts or follows a special token) exactly; for the pipelines whose tokenizer.json normalises to NFC (`qwen2`, `glm4`),
    /// where Jindou follows `tokenizers` and llama.cpp does not normalise, on the texts NFC
    /// leaves alone.
    @Test(arguments: ["afmoe-tiny-every4-f32.gguf", "exaone-moe-tiny-f32.gguf", "gpt-oss-tiny-mxfp4.gguf",
                      "hunyuan-moe-tiny-128-f32.gguf", "ernie45-moe-tiny-ff64-f32.gguf", "dots1-tiny-mha-f32.gguf",
                      "glm4-moe-lite-tiny-lead-f32.gguf", "qwen3-next-tiny-moe-f32.gguf", "qwen35-moe-tiny-f32.gguf", "kimi-linear-tiny-f32.gguf", "ling-hybrid-tiny-group4-f32.gguf"])
    func tokenizesLikeLlamaCpp(file: String) throws {
        let path = Fixtures.path("gguf/" + file)
        let text = try ServingText(directory: path, description: try GGUFCheckpoint(path: path).description)
        let tokenizer = try #require(text.tokenizer)
        let golden = try JSONDecoder().decode(LlamaCppTokenized.self, from: Data(contentsOf: URL(
            fileURLWithPath: path.replacingOccurrences(of: ".gguf", with: ".llama-cpp.json"))))
        let normalises = ["dots1-tiny-mha-f32.gguf", "glm4-moe-lite-tiny-lead-f32.gguf", "qwen3-next-tiny-moe-f32.gguf", "qwen35-moe-tiny-f32.gguf"].contains(file)
        var compared = 0
        for c in golden.tokenized where !normalises || c.text.precomposedStringWithCanonicalMapping.unicodeScalars.elementsEqual(c.text.unicodeScalars) {
            #expect(tokenizer.encode(c.text) == c.ids, "\(file): \(c.text.debugDescription)")
            compared += 1
            // SentencePiece with byte fallback: text without special tokens comes back whole.
            if file.hasPrefix("ernie"), !c.text.contains("<") {
                #expect(tokenizer.decode(c.ids) == c.text, "\(file): \(c.text.debugDescription)")
            }
        }
        #expect(compared >= golden.tokenized.count - 1 && compared > 40)
    }

    /// The GLM-4.7-Flash and Hunyuan-A13B files carry their released chat templates (whose
    /// renderings equal transformers': ChatTemplateTests), byte for byte.
    @Test(arguments: [("glm4-moe-lite-tiny-lead-f32.gguf", "glm4_moe_lite", "[gMASK]"),
                      ("hunyuan-moe-tiny-128-f32.gguf", "hunyuan_a13b", "<|startoftext|>")])
    func fileCarriesItsReleasedTemplate(file: String, template: String, bos: String) throws {
        let path = Fixtures.path("gguf/" + file)
        let text = try ServingText(directory: path, description: try GGUFCheckpoint(path: path).description)
        let released = try String(contentsOfFile: Fixtures.path("templates/\(template).jinja"), encoding: .utf8)
        #expect(text.chatTemplate?.source == released)
        #expect(text.specialTokens["bos_token"] == bos)
    }
}
