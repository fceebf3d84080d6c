import Foundation
import JindouModel
import JindouTemplates
import JindouTokenizer

extension GGMLVocabulary {
    /// The vocabulary in a GGUF file's `tokenizer.ggml.*` metadata; nil when the file has
    /// none (`tokenizer.ggml.model` missing or `none`, as `jindouctl quantize` writes for a
    /// checkpoint without tokenizer.json). Wrong types name the key.
    public init?(gguf file: GGUFFile) throws {
        let metadata = file.metadata
        func fail(_ key: String, _ reason: String) -> GGUFError { GGUFError(path: file.path, reason: "metadata '\(key)' \(reason)") }
        guard let model = metadata["tokenizer.ggml.model"] else { return nil }
        guard let name = model.string else { throw fail("tokenizer.ggml.model", "is not a string") }
        if name == "none" { return nil }
        func strings(_ key: String, required: Bool) throws -> [String] {
            guard let value = metadata[key] else {
                if required { throw fail(key, "is missing") }
                return []
            }
            guard let list = value.array else { throw fail(key, "is not an array") }
            return try list.map { guard let s = $0.string else { throw fail(key, "holds a non-string") }; return s }
        }
        func id(_ key: String) throws -> Int? {
            guard let value = metadata[key] else { return nil }
            guard let n = value.integer, n >= 0 else { throw fail(key, "is not a token id") }
            return n
        }
        func flag(_ key: String) throws -> Bool {
            guard let value = metadata[key] else { return false }
            guard case .bool(let b) = value else { throw fail(key, "is not a bool") }
            return b
        }
        let tokens = try strings("tokenizer.ggml.tokens", required: true)
        var types: [Int32] = []
        if let value = metadata["tokenizer.ggml.token_type"] {
            guard let list = value.array else { throw fail("tokenizer.ggml.token_type", "is not an array") }
            types = try list.map {
                guard let n = $0.integer, let t = Int32(exactly: n) else { throw fail("tokenizer.ggml.token_type", "holds a non-integer") }
                return t
            }
        } else {
            types = [Int32](repeating: GGMLVocabulary.TokenType.normal.rawValue, count: tokens.count)
        }
        guard let pre = metadata["tokenizer.ggml.pre"].map({ $0.string }) ?? .some(nil) else {
            throw fail("tokenizer.ggml.pre", "is not a string")
        }
        self.init(model: name, pre: pre, tokens: tokens, tokenTypes: types, merges: try strings("tokenizer.ggml.merges", required: false),
                  bosTokenID: try id("tokenizer.ggml.bos_token_id"), eosTokenID: try id("tokenizer.ggml.eos_token_id"),
                  addBOS: try flag("tokenizer.ggml.add_bos_token"), addEOS: try flag("tokenizer.ggml.add_eos_token"))
        unknownTokenID = try id("tokenizer.ggml.unknown_token_id")
        if let value = metadata["tokenizer.ggml.scores"] {
            guard let list = value.array else { throw fail("tokenizer.ggml.scores", "is not an array") }
            scores = try list.map { guard let d = $0.double else { throw fail("tokenizer.ggml.scores", "holds a non-number") }; return Float(d) }
        }
        if metadata["tokenizer.ggml.add_space_prefix"] != nil { addSpacePrefix = try flag("tokenizer.ggml.add_space_prefix") }
    }
}

extension ServingText {
    /// The text side of a GGUF file: tokenizer from `tokenizer.ggml.*`, chat template from
    /// `tokenizer.chat_template`, special tokens from the bos/eos/padding/unknown ids.
    public init(gguf path: String, description: ModelDescription) throws {
        try self.init(gguf: try GGUFFile(path: path), description: description)
    }

    /// The same from an already opened file (e.g. `GGUFCheckpoint.file`).
    public init(gguf file: GGUFFile, description: ModelDescription) throws {
        let path = file.path
        var specials: [String: String] = [:]
        var stops = Set(description.eosTokenIDs)
        guard let vocabulary = try GGMLVocabulary(gguf: file) else {
            self.init(tokenizer: nil, chatTemplate: nil, specialTokens: [:], stopTokenIDs: stops)
            return
        }
        let tokenizer = try Tokenizer(ggml: vocabulary, path: path)
        for (key, name) in [("bos", "bos_token"), ("eos", "eos_token"), ("padding", "pad_token"), ("unknown", "unk_token")] {
            if let id = file.metadata["tokenizer.ggml.\(key)_token_id"]?.integer, let token = tokenizer.token(id) {
                specials[name] = token
                if key == "eos" { stops.insert(id) }
            }
        }
        var template: ChatTemplate?
        if let value = file.metadata["tokenizer.chat_template"] {
            guard let source = value.string else {
                throw GGUFError(path: path, reason: "metadata 'tokenizer.chat_template' is not a string")
            }
            template = try ChatTemplate(source)
        }
        self.init(tokenizer: tokenizer, chatTemplate: template, specialTokens: specials, stopTokenIDs: stops)
    }
}
