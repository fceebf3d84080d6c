import Foundation

/// A checkpoint's `chat_template`, compiled once and rendered per request, producing
/// the same text as transformers' `apply_chat_template(..., tokenize=False)`.
public struct ChatTemplate: Sendable {
    public let source: String
    let nodes: [Node]

    public init(_ source: String) throws {
        self.source = source
        // jinja2's keep_trailing_newline=False (transformers' setting): one trailing newline
        // of the source is not part of the template.
        let body = source.hasSuffix("\n") ? String(source.dropLast()) : source
        var parser = Parser(try Lexer(source: body).pieces())
        nodes = try parser.parse()
    }

    /// Renders `messages` (and `tools`) as transformers does: keys whose value is null are
    /// dropped from messages, reasoning aliases are filled (`reasoning_content`,
    /// `thinking`), and special tokens plus `extra` (e.g. `enable_thinking`) are variables.
    public func render(messages: [TemplateValue], tools: [TemplateValue]? = nil, addGenerationPrompt: Bool,
                       extra: [String: TemplateValue] = [:], specialTokens: [String: String] = [:]) throws -> String {
        let cleaned = messages.map { message -> TemplateValue in
            guard case .object(let o) = message else { return message }
            var copy = TemplateObject()
            for (k, v) in o.pairs { if case .none = v { continue }; copy[k] = v }
            // transformers' _alias_reasoning_fields: thinking first, then the message, then reasoning_content.
            let reasoning = ["reasoning_content", "thinking", "reasoning"].lazy.compactMap { copy[$0] }.first
            if let reasoning {
                // {"thinking": r, **message, "reasoning_content": r}
                var aliased = TemplateObject()
                aliased["thinking"] = reasoning
                for (k, v) in copy.pairs { aliased[k] = v }
                aliased["reasoning_content"] = reasoning
                return .object(aliased)
            }
            return .object(copy)
        }
        var globals: [String: TemplateValue] = specialTokens.mapValues { .string($0) }
        globals["messages"] = .array(cleaned)
        globals["tools"] = tools.map { .array($0) } ?? .none
        globals["documents"] = .none
        globals["add_generation_prompt"] = .bool(addGenerationPrompt)
        for (k, v) in extra { globals[k] = v }
        return try Interpreter(globals: globals).render(nodes)
    }
}
