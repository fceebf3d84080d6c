import Foundation
import JindouTestSupport
import Testing
@testable import JindouTokenizer

/// The tokenizer a GGUF file carries (`tokenizer.ggml.*`, as llama.cpp's converter writes it
/// from tokenizer.json) tokenizes exactly as the tokenizer.json it came from.
@Suite("Tokenizer from a GGUF vocabulary")
struct GGMLVocabularyTests {
    static let fixtures = ["tokenizers/qwen-style": "qwen2", "tokenizers/glm-style": "glm4", "tokenizers/o200k-style": "gpt-4o",
                           // The tokenizer the DeepSeek GGUF fixtures were converted with (tools/fixture_gguf.py).
                           "gguf/tokenizers/deepseek": "deepseek-v3",
                           // The staged tokenizers of the dots1 and exaone-moe conversions.
                           "gguf/tokenizers/dots1": "qwen2", "gguf/tokenizers/exaone-moe": "exaone-moe"]

    func load(_ fixture: String) throws -> (json: Tokenizer, ggml: Tokenizer, vocabulary: GGMLVocabulary, golden: TokenizerGolden) {
        let path = Fixtures.path(fixture) + "/tokenizer.json"
        let json = try Tokenizer(contentsOf: path)
        let vocabulary = try GGMLVocabulary(tokenizerJSON: Data(contentsOf: URL(fileURLWithPath: path)), tokenizerConfig: nil,
                                            modelConfig: nil, vocabularySize: json.vocabularySize + 3, path: path)
        let golden = try JSONDecoder().decode(TokenizerGolden.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/golden.json")))
        return (json, try Tokenizer(ggml: vocabulary, path: "test.gguf"), vocabulary, golden)
    }

    @Test(arguments: Array(fixtures.keys))
    func encodesAndDecodesLikeTokenizers(fixture: String) throws {
        let (json, ggml, vocabulary, golden) = try load(fixture)
        #expect(vocabulary.pre == Self.fixtures[fixture])
        // Padding entries past the tokenizer's ids, as the converter writes for a larger vocab_size.
        #expect(vocabulary.tokens.suffix(3) == (json.vocabularySize..<(json.vocabularySize + 3)).map { "[PAD\($0)]" })
        #expect(golden.cases.count > 40)
        for c in golden.cases {
            #expect(ggml.encode(c.text) == c.ids, "\(fixture): \(c.text.debugDescription)")
            #expect(ggml.decode(c.ids) == c.decoded)
            #expect(ggml.decode(c.ids, skipSpecialTokens: true) == c.decodedSkipSpecial)
        }
        for id in 0..<json.vocabularySize {
            #expect(ggml.token(id) == json.token(id) && ggml.isSpecial(id) == json.isSpecial(id), "token \(id)")
        }
    }

    /// llama.cpp's `afmoe` digit split (unicode_regex_split_custom_afmoe), code point by code point.
    @Test func digitGroupsOfThreeAsLlamaCpp() {
        let cases: [(String, [String])] = [("ab12345c", ["ab12", "345", "c"]), ("x123", ["x123"]), ("1234567", ["1", "234", "567"]),
                                           ("no digits", ["no digits"]), ("12 34", ["12", " 34"]), ("٣٤٥٦", ["٣", "٤٥٦"]), ("", [])]
        for (text, pieces) in cases {
            #expect(Tokenizer.digitGroupsOfThree(text[...]).map(String.init) == pieces, "\(text.debugDescription)")
        }
    }

    @Test func unsupportedVocabulariesAreNamed() throws {
        let base = GGMLVocabulary(model: "gpt2", pre: "qwen2", tokens: ["a", "b", "ab"], tokenTypes: [1, 1, 1], merges: ["a b"])
        #expect(try Tokenizer(ggml: base, path: "m.gguf").encode("abab") == [2, 2])
        var bert = base
        bert.model = "bert"
        #expect(throws: TokenizerError.unsupported(path: "m.gguf", component: "tokenizer.ggml.model", type: "bert")) {
            try Tokenizer(ggml: bert, path: "m.gguf")
        }
        // SentencePiece (`llama`) needs a score per piece, and byte pieces spelled <0xXX>.
        var llama = base
        llama.model = "llama"
        #expect(throws: TokenizerError.malformed(path: "m.gguf", reason: "tokenizer.ggml.token_type (3) and tokenizer.ggml.scores (0) must have one entry per token (3)")) {
            try Tokenizer(ggml: llama, path: "m.gguf")
        }
        llama.scores = [-1, -2, -3]
        llama.addSpacePrefix = false
        #expect(try Tokenizer(ggml: llama, path: "m.gguf").encode("abab") == [2, 2])
        llama.tokenTypes = [1, 6, 1]
        #expect(throws: TokenizerError.malformed(path: "m.gguf", reason: "byte token 1 'b' is not <0xXX>")) {
            try Tokenizer(ggml: llama, path: "m.gguf")
        }
        var pre = base
        pre.pre = "llama-bpe"
        do {
            _ = try Tokenizer(ggml: pre, path: "m.gguf")
            Issue.record("llama-bpe accepted")
        } catch {
            #expect("\(error)" == "m.gguf: tokenizer.ggml.pre 'llama-bpe' is not supported (supported: afmoe, deepseek-v3, exaone-moe, glm4, gpt-4o, hunyuan, minimax-m2, qwen2, qwen35)")
        }
        var types = base
        types.tokenTypes = [1, 1]
        #expect(throws: TokenizerError.self) { try Tokenizer(ggml: types, path: "m.gguf") }
        var merges = base
        merges.merges = ["a c"]
        #expect(throws: TokenizerError.self) { try Tokenizer(ggml: merges, path: "m.gguf") }
        var bos = base
        bos.bosTokenID = 7
        #expect(throws: TokenizerError.self) { try Tokenizer(ggml: bos, path: "m.gguf") }
    }
}
