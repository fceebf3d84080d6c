import Foundation
import JindouModel
import JindouTemplates
import JindouTokenizer

/// A checkpoint's text side: tokenizer, chat template and special tokens, from
/// tokenizer.json and tokenizer_config.json (either may be absent: then only token-id
/// prompts are served), or from a GGUF file's `tokenizer.*` metadata.
public struct ServingText: Sendable {
    public let tokenizer: Tokenizer?
    public let chatTemplate: ChatTemplate?
    /// bos_token, eos_token, pad_token, unk_token as strings (template variables).
    public let specialTokens: [String: String]
    /// Token ids that end generation: the model's EOS ids and the tokenizer's eos_token.
    public let stopTokenIDs: Set<Int>

    init(tokenizer: Tokenizer?, chatTemplate: ChatTemplate?, specialTokens: [String: String], stopTokenIDs: Set<Int>) {
        self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate
        self.specialTokens = specialTokens
        self.stopTokenIDs = stopTokenIDs
    }

    /// The text side of a checkpoint directory, or of a GGUF file (`init(gguf:description:)`).
    public init(directory: String, description: ModelDescription) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), !isDirectory.boolValue {
            try self.init(gguf: directory, description: description)
        } else {
            self = try Self.checkpointText(directory: directory, description: description)
        }
    }

    /// tokenizer.json, tokenizer_config.json and chat_template.jinja of a checkpoint directory.
    private static func checkpointText(directory: String, description: ModelDescription) throws -> ServingText {
        let tokenizerPath = (directory as NSString).appendingPathComponent("tokenizer.json")
        let tokenizer = FileManager.default.fileExists(atPath: tokenizerPath) ? try Tokenizer(contentsOf: tokenizerPath) : nil
        var specials: [String: String] = [:]
        var template: String?
        let configPath = (directory as NSString).appendingPathComponent("tokenizer_config.json")
        if let data = FileManager.default.contents(atPath: configPath) {
            guard let config = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError.malformed(path: configPath, reason: "not a JSON object")
            }
            for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
                if let s = config[key] as? String { specials[key] = s }
                if let o = config[key] as? [String: Any], let s = o["content"] as? String { specials[key] = s }
            }
            if let t = config["chat_template"] as? String {
                template = t
            } else if let list = config["chat_template"] as? [[String: Any]] {
                template = list.first { $0["name"] as? String == "default" }?["template"] as? String ?? list.first?["template"] as? String
            }
        }
        let jinjaPath = (directory as NSString).appendingPathComponent("chat_template.jinja")
        if template == nil, let data = FileManager.default.contents(atPath: jinjaPath) { template = String(decoding: data, as: UTF8.self) }
        var stops = Set(description.eosTokenIDs)
        if let eos = specials["eos_token"], let id = tokenizer?.id(of: eos) { stops.insert(id) }
        return ServingText(tokenizer: tokenizer, chatTemplate: try template.map { try ChatTemplate($0) }, specialTokens: specials,
                           stopTokenIDs: stops)
    }
}

/// Finds stop strings in streamed text, holding back any tail that could still become one,
/// so no part of a stop string is ever emitted.
public struct StopStringMatcher: Sendable {
    let stops: [String]
    private var pending = ""
    public private(set) var stopped = false
    /// The stop string that ended the text.
    public private(set) var matchedStop: String?

    public init(_ stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Text safe to emit after adding `piece`; sets `stopped` when a stop string appeared
    /// (text from the stop string on is dropped).
    public mutating func feed(_ piece: String) -> String {
        guard !stopped else { return "" }
        if stops.isEmpty { return piece }
        pending += piece
        if let (stop, range) = stops.compactMap({ stop in pending.range(of: stop).map { (stop, $0) } }).min(by: { $0.1.lowerBound < $1.1.lowerBound }) {
            stopped = true
            matchedStop = stop
            let out = String(pending[..<range.lowerBound])
            pending = ""
            return out
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let longest = stops.map(\.count).max() ?? 0
        var keep = 0
        for length in stride(from: min(longest - 1, pending.count), through: 1, by: -1) {
            let suffix = pending.suffix(length)
            if stops.contains(where: { $0.hasPrefix(suffix) }) {
                keep = length
                break
            }
        }
        let out = String(pending.dropLast(keep))
        pending = String(pending.suffix(keep))
        return out
    }

    /// Whatever was held back, at the end of generation.
    public mutating func flush() -> String {
        defer { pending = "" }
        return stopped ? "" : pending
    }
}
