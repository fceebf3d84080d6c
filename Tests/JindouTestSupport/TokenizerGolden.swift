import Foundation

/// A tokenizer fixture's golden.json (tools/fixture_text.py `tokenizer_golden`): the ids the
/// `tokenizers` library gave each text and its decodings.
public struct TokenizerGolden: Decodable, Sendable {
    public struct Case: Decodable, Sendable {
        public let text: String
        public let ids: [Int]
        public let decoded: String
        public let decodedSkipSpecial: String
        enum CodingKeys: String, CodingKey {
            case text, ids, decoded
            case decodedSkipSpecial = "decoded_skip_special"
        }
    }
    public let cases: [Case]

    /// `directory`/golden.json.
    public static func load(directory: String) throws -> TokenizerGolden {
        try JSONDecoder().decode(TokenizerGolden.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/golden.json")))
    }
}
