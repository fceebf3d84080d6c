import Foundation
import JindouTestSupport
import Testing
@testable import JindouTokenizer

/// Token-for-token agreement with Hugging Face `tokenizers` on tokenizers it trained and
/// saved (Qwen2 and GLM4 pre-tokenizer patterns, NFC, byte-level BPE, added tokens).
@Suite("Tokenizer equals Hugging Face tokenizers")
struct TokenizerTests {
    static let fixtures = ["tokenizers/qwen-style", "tokenizers/glm-style", "tokenizers/o200k-style"]

    func load(_ fixture: String) throws -> (Tokenizer, TokenizerGolden) {
        let directory = Fixtures.path(fixture)
        let tokenizer = try Tokenizer(contentsOf: directory + "/tokenizer.json")
        let golden = try JSONDecoder().decode(TokenizerGolden.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/golden.json")))
        return (tokenizer, golden)
    }

    @Test(arguments: fixtures)
    func encodesLikeTokenizers(fixture: String) throws {
        let (tokenizer, golden) = try load(fixture)
        #expect(golden.cases.count > 40)
        for c in golden.cases {
            #expect(tokenizer.encode(c.text) == c.ids, "\(fixture): \(c.text.debugDescription)")
        }
    }

    @Test(arguments: fixtures)
    func decodesLikeTokenizers(fixture: String) throws {
        let (tokenizer, golden) = try load(fixture)
        for c in golden.cases {
            #expect(tokenizer.decode(c.ids) == c.decoded, "\(fixture): \(c.text.debugDescription)")
            #expect(tokenizer.decode(c.ids, skipSpecialTokens: true) == c.decodedSkipSpecial, "\(fixture): \(c.text.debugDescription)")
        }
    }

    @Test(arguments: fixtures)
    func streamingNeverEmitsBrokenUTF8(fixture: String) throws {
        let (tokenizer, golden) = try load(fixture)
        for c in golden.cases {
            var stream = StreamingDetokenizer(tokenizer: tokenizer, skipSpecialTokens: false)
            var text = ""
            for id in c.ids {
                let piece = stream.append(id)
                #expect(!piece.unicodeScalars.contains("\u{FFFD}") || c.decoded.contains("\u{FFFD}"), "broken piece in \(c.text.debugDescription)")
                text += piece
            }
            text += stream.finish()
            #expect(text == c.decoded)
        }
    }

    @Test func modelFixturesShipTokenizersThatFitTheirVocabulary() throws {
        for fixture in ["qwen3-moe-tiny", "glm4-moe-tiny"] {
            let tokenizer = try Tokenizer(contentsOf: Fixtures.path(fixture) + "/tokenizer.json")
            #expect(tokenizer.vocabularySize <= 320)
            #expect(tokenizer.decode(tokenizer.encode("Hello 世界 <|endoftext|>")) == "Hello 世界 <|endoftext|>")
        }
    }

    @Test func unsupportedComponentsAreNamed() throws {
        let json = Data(#"{"model": {"type": "Unigram", "vocab": []}}"#.utf8)
        #expect(throws: TokenizerError.unsupported(path: "t.json", component: "model", type: "Unigram")) {
            try Tokenizer(json: json, path: "t.json")
        }
        #expect(throws: TokenizerError.missingFile(path: "/nonexistent/tokenizer.json")) {
            try Tokenizer(contentsOf: "/nonexistent/tokenizer.json")
        }
    }
}
