import Foundation
import JindouTestSupport
import Testing
@testable import JindouTemplates

/// The real Qwen3 and GLM-4.6 chat templates render exactly what transformers'
/// `apply_chat_template` renders, for conversations with system prompts, multiple turns,
/// reasoning, tool calls and responses, tool lists, content parts, and enable_thinking —
/// and refuse exactly the inputs transformers refuses.
@Suite("Chat templates equal transformers' apply_chat_template")
struct ChatTemplateTests {
    static let templates = ["qwen3", "glm4", "gpt_oss", "minimax_m2", "glm4_moe_lite", "hunyuan_a13b", "deepseek_v31", "deepseek_v32",
                                   "kimi_k2", "kimi_k2_thinking"]

    func goldens(_ name: String) throws -> (cases: [TemplateObject], clock: String, specialTokens: TemplateObject) {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("templates/goldens.json")))
        guard case .object(let root) = try JSONText.parse(data), case .object(let templates)? = root["templates"],
              case .array(let cases)? = templates[name], case .string(let clock)? = root["clock"],
              case .object(let special)? = root["special_tokens"], case .object(let tokens)? = special[name] else {
            throw TemplateError(.type, "bad goldens file")
        }
        return (cases.compactMap { if case .object(let o) = $0 { return o } else { return nil } }, clock, tokens)
    }

    /// `strftime_now` at the clock the goldens were rendered at ("YYYY-MM-DD HH:MM:SS"), so
    /// templates that print the date (gpt-oss's, Hunyuan's) render the same on any day.
    static func frozenStrftimeNow(_ clock: String) -> TemplateValue {
        let fields = clock.split(whereSeparator: { $0 == "-" || $0 == " " || $0 == ":" }).compactMap { Int32($0) }
        return .function(Function(name: "strftime_now") { args, _ in
            var parts = tm()
            (parts.tm_year, parts.tm_mon, parts.tm_mday) = (fields[0] - 1900, fields[1] - 1, fields[2])
            (parts.tm_hour, parts.tm_min, parts.tm_sec) = (fields[3], fields[4], fields[5])
            _ = timegm(&parts)  // fills in the weekday and the day of the year
            var buffer = [Int8](repeating: 0, count: 256)
            let count = strftime(&buffer, buffer.count, args.first?.text ?? "%Y-%m-%d", &parts)
            return .string(String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        })
    }

    @Test(arguments: templates)
    func rendersLikeTransformers(name: String) throws {
        let source = try String(contentsOfFile: Fixtures.path("templates/\(name).jinja"), encoding: .utf8)
        let template = try ChatTemplate(source)
        let (cases, clock, specialTokens) = try goldens(name)
        #expect(cases.count > 50)
        for c in cases {
            guard case .array(let messages)? = c["messages"], case .object(let options)? = c["options"] else {
                Issue.record("malformed golden")
                continue
            }
            let tools: [TemplateValue]? = { if case .array(let t)? = c["tools"] { return t } else { return nil } }()
            // bos_token / eos_token as transformers passed them (DeepSeek's templates print bos_token).
            var extra: [String: TemplateValue] = specialTokens.pairs.reduce(into: ["strftime_now": Self.frozenStrftimeNow(clock)]) {
                $0[$1.0] = $1.1
            }
            if let thinking = options["enable_thinking"] { extra["enable_thinking"] = thinking }
            let label = "\(name) \(c["name"]?.text ?? "?") tools=\(tools != nil) \(TemplateValue.object(options).repr)"
            let result = Result {
                try template.render(messages: messages, tools: tools, addGenerationPrompt: options["add_generation_prompt"]?.truthy ?? false,
                                    extra: extra)
            }
            switch (result, c["rendered"]) {
            case (.success(let text), .string(let expected)?):
                #expect(text == expected, "\(label)\n--- got ---\n\(text)\n--- expected ---\n\(expected)")
            case (.failure, nil):
                #expect(c["error"] != nil)  // transformers refused too
            case (.success(let text), _):
                Issue.record("\(label): rendered although transformers raised \(c["error"]?.text ?? "?"):\n\(text)")
            case (.failure(let error), _):
                Issue.record("\(label): \(error)")
            }
        }
    }

    @Test func jsonRoundTripKeepsOrderAndNumberKinds() throws {
        let text = #"{"z": 1, "a": [1.0, 2, "é", null, true], "m": {"k": "v\n\"q\""}}"#
        let value = try JSONText.parse(Data(text.utf8))
        #expect(try JSONText.encode(value) == #"{"z": 1, "a": [1.0, 2, "é", null, true], "m": {"k": "v\n\"q\""}}"#)
        #expect(try JSONText.encode(value, ensureASCII: true).contains(#""\u00e9""#))
        #expect(throws: JSONText.ParseError.self) { try JSONText.parse(Data("{\"a\": }".utf8)) }
    }

    @Test func jinjaSemantics() throws {
        func render(_ source: String, _ variables: [String: TemplateValue] = [:]) throws -> String {
            try ChatTemplate(source).render(messages: [], addGenerationPrompt: false, extra: variables)
        }
        #expect(try render("{% for x in [3, 1, 2] %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}") == "13,21,32")
        #expect(try render("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}") == "6")
        #expect(try render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}") == "1")  // loop scope
        #expect(try render("{{ 'a,b,,c'.split(',')[-1] }}{{ '  hi '.strip() }}{{ 'abc'[::-1] }}") == "chicba")
        #expect(try render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 1 / 2 }}") == "3 -4 1 1024 0.5")
        #expect(try render("{{ x is defined }} {{ x | default('d') }} {{ none is none }}") == "False d True")
        #expect(try render("{{ [1, 'a', none, true] }} {{ {'k': 1.5} }}") == "[1, 'a', None, True] {'k': 1.5}")
        #expect(try render("{%- macro m(a, b='B') -%}[{{ a }}{{ b }}]{%- endmacro -%}{{ m(1) }}{{ m(2, b=3) }}") == "[1B][23]")
        #expect(try render("  {% if true %}\n    x\n  {% endif %}\n") == "    x\n")  // trim_blocks + lstrip_blocks
        #expect(try render("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}") == "012")
        // keep_trailing_newline=False: one trailing newline of the source is dropped, not two.
        #expect(try render("a\n\n") == "a\n" && render("a{%- if false %}\n    x\n{%- endif %}\n\n") == "a")
        #expect(throws: TemplateError.self) { try render("{{ raise_exception('no') }}") }
        #expect(throws: TemplateError.self) { try render("{{ 'a' + undefined_thing }}") }
        #expect(throws: TemplateError.self) { try render("{% if x %}") }
    }
}
