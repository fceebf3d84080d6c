import Foundation
import JindouGrammar
import JindouModel
import JindouTemplates
import JindouTestSupport
import JindouTokenizer
import Testing

/// The schemas and instances `tools/fixture_schemas.py` labelled with the `jsonschema` package.
struct SchemaCorpus {
    struct Instance { var text: String; var valid: Bool }
    struct Entry { var name: String; var schema: TemplateValue; var instances: [Instance] }

    static let entries: [Entry] = {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: Fixtures.path("schemas/schemas.json"))),
              case .object(let doc)? = try? JSONText.parse(data), case .array(let items)? = doc["schemas"] else { return [] }
        return items.compactMap { item in
            guard case .object(let o) = item, case .string(let name)? = o["name"], let schema = o["schema"],
                  case .array(let list)? = o["instances"] else { return nil }
            let instances: [Instance] = list.compactMap {
                guard case .object(let i) = $0, case .string(let text)? = i["text"], case .bool(let valid)? = i["valid"] else { return nil }
                return Instance(text: text, valid: valid)
            }
            return Entry(name: name, schema: schema, instances: instances)
        }
    }()

    static var names: [String] { entries.map(\.name) }
}

@Suite("JSON-schema grammars accept exactly what jsonschema validates")
struct JSONSchemaGrammarTests {
    @Test("Every valid instance and every prefix of it is accepted; invalid ones are not", arguments: SchemaCorpus.names)
    func instancesAgreeWithJsonschema(name: String) throws {
        let entry = try #require(SchemaCorpus.entries.first { $0.name == name })
        let grammar = try JSONSchemaGrammar(schema: entry.schema)
        #expect(entry.instances.contains { $0.valid } && entry.instances.contains { !$0.valid })
        for instance in entry.instances {
            var matcher = JSONSchemaMatcher(grammar)
            var alive = true
            for byte in instance.text.utf8 where alive {
                alive = matcher.feed(byte)
            }
            let accepted = alive && matcher.isComplete
            #expect(accepted == instance.valid, "\(name): \(instance.text) valid=\(instance.valid)")
        }
    }

    @Test("Keywords that constrain values Jindou cannot enforce are refused by name")
    func unsupportedKeywords() throws {
        for keyword in ["pattern", "minimum", "format", "patternProperties", "uniqueItems", "not", "prefixItems"] {
            let schema = try JSONText.parse(Data(#"{"type": "string", "\#(keyword)": 1}"#.utf8))
            #expect {
                try JSONSchemaGrammar(schema: schema)
            } throws: { error in
                (error as? JSONSchemaError)?.message.contains("'\(keyword)'") ?? false
            }
        }
        let dangling = try JSONText.parse(Data(##"{"$ref": "#/$defs/missing"}"##.utf8))
        #expect(throws: JSONSchemaError.self) { try JSONSchemaGrammar(schema: dangling) }
    }

    /// Keys of additional properties are JSON strings: escapes follow JSON's rules (a random
    /// walk once produced `{"\\0":5}`). Foundation's JSON parser is the judge.
    @Test func freeKeysTakeOnlyJSONEscapes() throws {
        let grammar = try JSONSchemaGrammar(schema: JSONText.parse(Data(#"{"type": "object", "additionalProperties": {"type": "integer"}}"#.utf8)))
        let texts = [#"{"a\0":1}"#, #"{"a\x41":1}"#, #"{"\u00e9\"":2}"#, #"{"\\":3}"#, #"{"\u12G4":4}"#, #"{"\/\b\f\n\r\t":5}"#,
                     #"{"\u0041\u":6}"#, #"{"a\"b":7}"#]
        var accepted = 0
        for text in texts {
            var matcher = JSONSchemaMatcher(grammar)
            let ours = matcher.feed(Array(text.utf8)) && matcher.isComplete
            let foundation = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) != nil
            #expect(ours == foundation, "\(text): matcher \(ours), JSONSerialization \(foundation)")
            if ours { accepted += 1 }
        }
        #expect(accepted == 4)
    }

    /// Walks the constraint with random allowed tokens of the bundled model's vocabulary:
    /// every run ends (an end token, within the budget) with text the grammar accepts whole.
    @Test("Random walks through the token mask always produce a whole value", arguments: SchemaCorpus.names)
    func randomWalksEndInValues(name: String) throws {
        let entry = try #require(SchemaCorpus.entries.first { $0.name == name })
        let grammar = try JSONSchemaGrammar(schema: entry.schema)
        let tokenizer = try Tokenizer(contentsOf: Fixtures.path("qwen3-moe-tiny") + "/tokenizer.json")
        let size = tokenizer.vocabularySize
        let vocabulary = TokenVocabulary(bytes: (0..<size).map { tokenizer.bytes([$0], skipSpecialTokens: true) })
        let end = size  // an id outside the vocabulary's text tokens stands for EOS
        var generator = SystemRandomNumberGenerator()
        var ended = 0
        for _ in 0..<20 {
            var constraint = JSONConstraint(grammar: grammar, vocabulary: vocabulary, endTokens: [end])
            var text: [UInt8] = []
            for _ in 0..<400 {
                let mask = constraint.allowedTokens(vocabularySize: size + 1)
                let allowed = mask.indices.filter { mask[$0] }
                #expect(!allowed.isEmpty)
                // Prefer ending, closing and short tokens half of the time, so walks finish.
                let closing = allowed.filter { $0 == end || [[0x7D], [0x5D], [0x22], [0x30]].contains(vocabulary.bytes[$0]) }
                let pool = !closing.isEmpty && Double.random(in: 0..<1, using: &generator) < 0.5 ? closing : allowed
                let token = pool.contains(end) ? end : pool.randomElement(using: &generator) ?? end
                if token == end {
                    ended += 1
                    break
                }
                text += vocabulary.bytes[token]
                constraint.accept(token)
            }
            if let last = text.last, constraint.matcher.isComplete {
                _ = last
                var check = JSONSchemaMatcher(grammar)
                #expect(check.feed(text) && check.isComplete, "\(String(decoding: text, as: UTF8.self))")
                #expect((try? JSONText.parse(Data(text))) != nil, "not JSON: \(String(decoding: text, as: UTF8.self))")
            }
        }
        // Schemas with open-ended objects need not end on a random walk (a required key
        // must be typed at random); the finite ones do.
        if !["open_object", "typed_extras"].contains(name) { #expect(ended > 0) }
    }
}

@Suite("The in-process engine honours a request's constraint")
struct EngineConstraintTests {
    @Test("jindouctl's engine path gives a value of the schema, as the scheduler does")
    func engineGenerationFollowsTheSchema() async throws {
        let engine = try await EngineCache.shared.engine("qwen3-moe-tiny")
        let tokenizer = try Tokenizer(contentsOf: Fixtures.path("qwen3-moe-tiny") + "/tokenizer.json")
        let size = engine.description.vocabularySize
        let vocabulary = TokenVocabulary(bytes: (0..<size).map { tokenizer.bytes([$0], skipSpecialTokens: true) })
        let schema = try JSONText.parse(Data(#"{"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"enum": [1, 2, 3]}}, "required": ["ok", "n"], "additionalProperties": false}"#.utf8))
        let grammar = try JSONSchemaGrammar(schema: schema)
        // The fixture's config has no eos_token_id: its end is the tokenizer's eos_token.
        let end = Set(engine.description.eosTokenIDs).union([try #require(tokenizer.id(of: "<|im_end|>"))])
        var request = GenerationRequest(promptTokenIDs: [1, 2, 3, 4], maxNewTokens: 60, stopTokenIDs: end)
        request.constraint = JSONConstraint(grammar: grammar, vocabulary: vocabulary, endTokens: end)
        let result = try await engine.generate(request)
        #expect(result.finishReason == .stop)
        var matcher = JSONSchemaMatcher(grammar)
        let text = result.tokenIDs.filter { !end.contains($0) }.flatMap { vocabulary.bytes[$0] }
        #expect(matcher.feed(text) && matcher.isComplete, "\(String(decoding: text, as: UTF8.self))")
    }
}
