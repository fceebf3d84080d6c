import Foundation
import JindouTemplates

// Every family's output format, one small grammar each, after vLLM 0.33.0's parsers of the
// same names (vllm/parser/{qwen3,glm47_moe,kimi_k2,minimax_m2,deepseek_v32}.py and
// vllm/tool_parsers/{hermes,deepseekv31}_tool_parser.py). The reasoning side follows the
// reasoning parser vLLM's recipes pair with each (qwen3, glm45, deepseek_v3, kimi_k2, minimax_m2).

extension OutputFormat {
    /// Tool-call parser names Jindou knows (vLLM's `--tool-call-parser` names).
    public static let toolCallParsers = ["hermes", "qwen3_coder", "glm45", "deepseek_v31", "deepseek_v32", "kimi_k2", "minimax_m2", "openai"]
    /// Reasoning parser names Jindou knows (vLLM's `--reasoning-parser` names).
    public static let reasoningParsers = ["qwen3", "glm45", "deepseek_v3", "kimi_k2", "minimax_m2", "openai_gptoss"]

    /// The format for a pair of parser names; nil names leave that side out.
    public static func named(toolCallParser: String?, reasoningParser: String?) throws -> OutputFormat {
        // gpt-oss's harmony channels carry both sides at once.
        let harmonyTools = toolCallParser == "openai", harmonyReasoning = reasoningParser == "openai_gptoss"
        if harmonyTools || harmonyReasoning {
            guard (toolCallParser == nil || harmonyTools) && (reasoningParser == nil || harmonyReasoning) else {
                throw OutputFormatError.unpairedHarmony(toolCallParser: toolCallParser, reasoningParser: reasoningParser)
            }
            var format = OutputFormat(reasoningParser: reasoningParser, reasoning: nil, toolCallParser: toolCallParser, toolCalls: nil)
            format.harmony = HarmonyFormat(extractsReasoning: harmonyReasoning, parsesToolCalls: harmonyTools)
            return format
        }
        var tools: ToolCallFormat?
        if let toolCallParser {
            tools = switch toolCallParser {
            case "hermes", "qwen3_json", "qwen3": hermesTools
            case "qwen3_coder", "qwen3_xml": qwen3CoderTools
            case "glm45", "glm47": glmTools
            case "deepseek_v31": deepseekV31Tools
            case "deepseek_v32": deepseekV32Tools
            case "kimi_k2": kimiTools
            case "minimax_m2": minimaxTools
            default: throw OutputFormatError.unknownToolCallParser(toolCallParser)
            }
        }
        var reasoning: ReasoningFormat?
        if let reasoningParser {
            reasoning = switch reasoningParser {
            case "qwen3": qwen3Reasoning
            case "glm45", "glm47": glmReasoning
            case "deepseek_v3", "deepseek_r1": deepseekReasoning
            case "kimi_k2": kimiReasoning
            case "minimax_m2": minimaxReasoning
            default: throw OutputFormatError.unknownReasoningParser(reasoningParser)
            }
        }
        return OutputFormat(reasoningParser: reasoningParser, reasoning: reasoning, toolCallParser: toolCallParser, toolCalls: tools)
    }

    /// The parsers for a chat template, from the markers it writes (Qwen3-Coder's XML calls,
    /// GLM's tags, Kimi's sections…); reasoning only when the template knows `<think>`.
    public static func defaultParsers(chatTemplate: String?) -> (toolCall: String?, reasoning: String?) {
        let template = chatTemplate ?? ""
        let thinks = template.contains("<think>") || template.contains("</think>")
        func pair(_ tool: String, _ reasoning: String) -> (String?, String?) { (tool, thinks ? reasoning : nil) }
        if template.contains("<|channel|>") { return ("openai", "openai_gptoss") }
        if template.contains("｜DSML｜") { return pair("deepseek_v32", "deepseek_v3") }
        if template.contains("<|tool_calls_section_begin|>") { return pair("kimi_k2", "kimi_k2") }
        if template.contains("<minimax:tool_call>") { return pair("minimax_m2", "minimax_m2") }
        if template.contains("<arg_key>") { return pair("glm45", "glm45") }
        if template.contains("<｜tool▁calls▁begin｜>") { return pair("deepseek_v31", "deepseek_v3") }
        if template.contains("<function=") && template.contains("<parameter=") { return pair("qwen3_coder", "qwen3") }
        if template.contains("<tool_call>") { return pair("hermes", "qwen3") }
        return (nil, thinks ? "qwen3" : nil)
    }
}

public enum OutputFormatError: Error, CustomStringConvertible, Equatable {
    case unknownToolCallParser(String), unknownReasoningParser(String)
    case unpairedHarmony(toolCallParser: String?, reasoningParser: String?)
    public var description: String {
        switch self {
        case .unpairedHarmony(let tool, let reasoning):
            "the harmony parsers (tool-call parser 'openai', reasoning parser 'openai_gptoss') read gpt-oss's channels and pair only with each other or none, not '\(tool ?? "none")' with '\(reasoning ?? "none")'"
        case .unknownToolCallParser(let n):
            "unknown tool-call parser '\(n)' (known: \(OutputFormat.toolCallParsers.joined(separator: ", ")))"
        case .unknownReasoningParser(let n):
            "unknown reasoning parser '\(n)' (known: \(OutputFormat.reasoningParsers.joined(separator: ", ")))"
        }
    }
}

// MARK: Reasoning

/// `thinking` / `enable_thinking` from chat_template_kwargs: nil when neither is given.
private func thinkingArgument(_ arguments: TemplateObject) -> Bool? {
    let values = ["thinking", "enable_thinking"].compactMap { arguments[$0] }
    guard !values.isEmpty else { return nil }
    return values.contains { $0.truthy }
}

private let qwen3Reasoning: ReasoningFormat = {
    var f = ReasoningFormat { ($0["enable_thinking"]?.truthy) ?? true }
    f.implicitEnds = ["<tool_call>"]
    f.stripTrailingWhitespace = false
    return f
}()

private let glmReasoning: ReasoningFormat = {
    var f = ReasoningFormat { thinkingArgument($0) ?? true }
    f.implicitEnds = ["<tool_call>"]
    f.contentMayOpen = true
    return f
}()

/// DeepSeek-V3.1/V3.2 think only when the request asks (`thinking: true`).
private let deepseekReasoning: ReasoningFormat = {
    var f = ReasoningFormat { thinkingArgument($0) ?? false }
    f.stripTrailingWhitespace = false
    return f
}()

private let kimiReasoning: ReasoningFormat = {
    var f = ReasoningFormat { thinkingArgument($0) ?? true }
    f.implicitEnds = ["<|tool_calls_section_begin|>"]
    return f
}()

private let minimaxReasoning: ReasoningFormat = {
    var f = ReasoningFormat { _ in true }
    f.implicitEnds = ["<minimax:tool_call>"]
    return f
}()

// MARK: Tool calls

private func t(_ state: ParserState, _ marker: String, _ next: ParserState, _ events: [ParserEventKind] = []) -> (ParserStateMarker, ParserTransition) {
    (ParserStateMarker(state, marker), ParserTransition(next, events))
}

private func grammar(_ name: String, _ markers: [(String, String)], json: Bool, _ transitions: [(ParserStateMarker, ParserTransition)]) -> ParserGrammar {
    ParserGrammar(name: name, markers: markers, transitions: Dictionary(transitions, uniquingKeysWith: { $1 }),
                  initialState: .content, argumentsAreJSON: json)
}

private func json(_ object: TemplateObject) -> String { (try? JSONText.encode(.object(object))) ?? "{}" }

/// Hermes / Qwen3: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`.
private let hermesTools: ToolCallFormat = {
    var f = ToolCallFormat(grammar: grammar("hermes", [("TOOL_START", "<tool_call>"), ("TOOL_END", "</tool_call>")], json: false, [
        t(.content, "TOOL_START", .toolArguments, [.toolCallStart]),
        t(.toolArguments, "TOOL_END", .toolBetween, [.toolCallEnd]),
        // Text after a call is not content (vLLM's hermes parser drops it).
        t(.toolBetween, "TOOL_START", .toolArguments, [.toolCallStart]),
    ]))
    f.convertArguments = { raw, partial, _, _ in hermesArguments(raw, partial: partial) }
    f.wholeMessageCalls = true
    f.streamsWrittenArguments = true
    f.stripContentWhitespaceWithTools = false
    f.dropWhitespaceOnlyContentBeforeTools = false
    return f
}()

/// The `arguments` value of a Hermes body: the model's text while it streams, the value
/// re-serialised once the body is complete JSON.
func hermesArguments(_ raw: String, partial: Bool) -> String? {
    if !partial {
        guard case .object(let body)? = try? JSONText.parse(Data(pythonStrip(raw).utf8)) else { return nil }
        guard let arguments = body["arguments"] ?? body["parameters"] else { return nil }
        if case .string(let s) = arguments { return s }
        return try? JSONText.encode(arguments)
    }
    let s = Array(raw.unicodeScalars)
    let key = Array("\"arguments\"".unicodeScalars)
    var i = 0
    while i + key.count <= s.count && !s[i..<(i + key.count)].elementsEqual(key) { i += 1 }
    guard i + key.count <= s.count else { return nil }
    var j = i + key.count
    while j < s.count, isPythonSpace(s[j]) { j += 1 }
    guard j < s.count, s[j] == ":" else { return nil }
    j += 1
    while j < s.count, isPythonSpace(s[j]) { j += 1 }
    guard j < s.count, s[j] == "{" else { return nil }
    var depth = 0, inString = false, escape = false, end = s.count
    for k in j..<s.count {
        let c = s[k]
        if escape { escape = false; continue }
        if inString { if c == "\\" { escape = true } else if c == "\"" { inString = false }; continue }
        if c == "\"" { inString = true } else if c == "{" || c == "[" { depth += 1 } else if c == "}" || c == "]" {
            depth -= 1
            if depth == 0 { end = k + 1; break }
        }
    }
    return String(String.UnicodeScalarView(s[j..<end]))
}

/// Qwen3-Coder / Qwen3.5: `<tool_call><function=NAME><parameter=K>V</parameter></function></tool_call>`.
private let qwen3CoderTools: ToolCallFormat = {
    var f = ToolCallFormat(grammar: grammar("qwen3_coder", [
        ("TOOL_START", "<tool_call>"), ("TOOL_END", "</tool_call>"), ("FUNC_PREFIX", "<function="), ("FUNC_END", "</function>"),
        ("PARAM_START", "<parameter="), ("PARAM_END", "</parameter>"), ("CLOSE_ANGLE", ">"),
    ], json: false, [
        t(.content, "TOOL_START", .toolPreamble, [.reasoningEnd, .toolCallStart]),
        t(.content, "FUNC_PREFIX", .toolName, [.toolCallStart]),
        t(.toolPreamble, "TOOL_END", .content, [.toolCallEnd]),
        t(.toolPreamble, "FUNC_PREFIX", .toolName),
        t(.toolName, "CLOSE_ANGLE", .toolArguments),
        t(.toolName, "FUNC_END", .toolBetween, [.toolCallEnd]),
        t(.toolName, "TOOL_END", .content, [.toolCallEnd]),
        t(.toolName, "TOOL_START", .toolPreamble, [.toolCallEnd, .toolCallStart]),
        t(.toolName, "FUNC_PREFIX", .toolName, [.toolCallEnd, .toolCallStart]),
        t(.toolArguments, "FUNC_END", .toolBetween, [.toolCallEnd]),
        t(.toolArguments, "FUNC_PREFIX", .toolName, [.toolCallEnd, .toolCallStart]),
        t(.toolArguments, "PARAM_START", .toolArguments, [.arguments]),
        t(.toolArguments, "PARAM_END", .toolArguments, [.arguments]),
        t(.toolBetween, "TOOL_END", .content),
        t(.toolBetween, "TOOL_START", .toolPreamble, [.toolCallStart]),
        t(.toolBetween, "FUNC_PREFIX", .toolName, [.toolCallStart]),
    ]))
    f.convertArguments = { raw, partial, _, _ in
        var params = TemplateObject()
        for p in xmlParameters(raw, opener: "<parameter=", closer: "</parameter>", partial: partial) {
            params[p.name] = .string(trimWrappingNewlines(p.value))
        }
        return json(params)
    }
    return f
}()

private func trimWrappingNewlines(_ value: String) -> String {
    var v = value
    if v.hasPrefix("\n") { v.removeFirst() }
    if v.hasSuffix("\n") { v.removeLast() }
    return v
}

/// `<OPENER NAME>VALUE</CLOSER>` parameters, each ended by its closer or the next opener; with
/// `partial`, a last open one too. The first value of a repeated name keeps its place and
/// the last value wins, as a Python dict assignment does.
func xmlParameters(_ raw: String, opener: String, closer: String, partial: Bool,
                   name: (String) -> String? = { $0 }) -> [(name: String, value: String)] {
    var result: [(name: String, value: String)] = []
    var rest = Substring(raw)
    while let open = rest.range(of: opener) {
        let afterOpener = rest[open.upperBound...]
        guard let close = afterOpener.firstIndex(of: ">") else { break }
        let header = String(afterOpener[..<close])
        let body = afterOpener[afterOpener.index(after: close)...]
        let end = body.range(of: closer)
        let next = body.range(of: opener)
        let value: Substring
        if let end, next.map({ end.lowerBound <= $0.lowerBound }) ?? true {
            value = body[..<end.lowerBound]
            rest = body[end.upperBound...]
        } else if let next {
            value = body[..<next.lowerBound]
            rest = body[next.lowerBound...]
        } else {
            if partial, let n = name(header), !n.isEmpty { result.append((n, String(body))) }
            break
        }
        if let n = name(header), !n.isEmpty { result.append((n, String(value))) }
    }
    return result
}

/// GLM-4.5…4.7 and GLM-5: `<tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value></tool_call>`.
private let glmTools: ToolCallFormat = {
    var transitions = [
        t(.content, "TOOL_START", .toolName, [.toolCallStart]),
        t(.toolName, "ARG_KEY_START", .toolArguments, [.arguments]),
        t(.toolName, "TOOL_END", .content, [.toolCallEnd]),
        t(.toolArguments, "TOOL_END", .content, [.toolCallEnd]),
    ]
    for marker in ["ARG_KEY_START", "ARG_KEY_END", "ARG_VALUE_START", "ARG_VALUE_END"] {
        transitions.append(t(.toolArguments, marker, .toolArguments, [.arguments]))
    }
    var f = ToolCallFormat(grammar: grammar("glm45", [
        ("TOOL_START", "<tool_call>"), ("TOOL_END", "</tool_call>"), ("ARG_KEY_START", "<arg_key>"), ("ARG_KEY_END", "</arg_key>"),
        ("ARG_VALUE_START", "<arg_value>"), ("ARG_VALUE_END", "</arg_value>"),
    ], json: false, transitions))
    f.convertArguments = { raw, partial, _, _ in json(glmArguments(raw, partial: partial)) }
    f.trimName = true
    f.validateToolNames = true
    return f
}()

func glmArguments(_ raw: String, partial: Bool) -> TemplateObject {
    var params = TemplateObject()
    var rest = Substring(raw)
    while let keyStart = rest.range(of: "<arg_key>") {
        guard let keyEnd = rest[keyStart.upperBound...].range(of: "</arg_key>") else { break }
        let key = pythonStrip(String(rest[keyStart.upperBound..<keyEnd.lowerBound]))
        var afterKey = rest[keyEnd.upperBound...]
        while let c = afterKey.unicodeScalars.first, isPythonSpace(c) { afterKey = afterKey.dropFirst() }
        guard afterKey.hasPrefix("<arg_value>") else { rest = afterKey; continue }
        let valueStart = afterKey.index(afterKey.startIndex, offsetBy: "<arg_value>".count)
        if let valueEnd = afterKey[valueStart...].range(of: "</arg_value>") {
            params[key] = .string(String(afterKey[valueStart..<valueEnd.lowerBound]))
            rest = afterKey[valueEnd.upperBound...]
        } else {
            if partial && !key.isEmpty { params[key] = .string(String(afterKey[valueStart...])) }
            break
        }
    }
    return params
}

/// DeepSeek-V3.1: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{json}<｜tool▁call▁end｜>…`.
private let deepseekV31Tools: ToolCallFormat = {
    var f = ToolCallFormat(grammar: grammar("deepseek_v31", [
        ("CALLS_BEGIN", "<｜tool▁calls▁begin｜>"), ("CALLS_END", "<｜tool▁calls▁end｜>"),
        ("CALL_BEGIN", "<｜tool▁call▁begin｜>"), ("CALL_END", "<｜tool▁call▁end｜>"), ("SEP", "<｜tool▁sep｜>"),
    ], json: true, [
        t(.content, "CALLS_BEGIN", .toolPreamble),
        t(.toolPreamble, "CALL_BEGIN", .toolName, [.toolCallStart]),
        t(.toolName, "SEP", .toolArguments),
        t(.toolArguments, "CALL_END", .toolBetween, [.toolCallEnd]),
        t(.toolBetween, "CALL_BEGIN", .toolName, [.toolCallStart]),
        t(.toolBetween, "CALLS_END", .content),
        t(.toolPreamble, "CALLS_END", .content),
    ]))
    f.streamFirstArgumentChunk = true
    f.wholeMessageCalls = true
    f.contentStopsAtCalls = true
    f.stripContentWhitespaceWithTools = false
    f.dropWhitespaceOnlyContentBeforeTools = false
    return f
}()

/// DeepSeek-V3.2's DSML: `<｜DSML｜function_calls><｜DSML｜invoke name="N"><｜DSML｜parameter name="K" string="true|false">V</｜DSML｜parameter>…`.
private let deepseekV32Tools: ToolCallFormat = {
    let d = "｜DSML｜"
    var f = ToolCallFormat(grammar: grammar("deepseek_v32", [
        ("TOOL_START", "<\(d)function_calls>"), ("TOOL_END", "</\(d)function_calls>"), ("INVOKE_PREFIX", "<\(d)invoke name=\""),
        ("INVOKE_NAME_END", "\">"), ("INVOKE_END", "</\(d)invoke>"), ("PARAM_START", "<\(d)parameter"), ("PARAM_CLOSE", "</\(d)parameter>"),
    ], json: false, [
        t(.content, "TOOL_START", .toolPreamble),
        t(.toolPreamble, "INVOKE_PREFIX", .toolName, [.toolCallStart]),
        t(.content, "INVOKE_PREFIX", .toolName, [.toolCallStart]),
        t(.toolName, "INVOKE_NAME_END", .toolArguments),
        t(.toolArguments, "INVOKE_END", .toolBetween, [.toolCallEnd]),
        t(.toolArguments, "TOOL_END", .toolBetween, [.toolCallEnd]),
        t(.toolBetween, "INVOKE_PREFIX", .toolName, [.toolCallStart]),
        t(.toolBetween, "TOOL_END", .toolBetween),
        t(.toolBetween, "TOOL_START", .toolPreamble),
    ]))
    f.convertArguments = { raw, partial, tools, name in
        var params = TemplateObject()
        for p in dsmlParameters(raw, partial: partial) {
            if p.isString {
                params[p.name] = .string(p.value)
            } else {
                params[p.name] = (try? JSONText.parse(Data(p.value.utf8))) ?? .string(p.value)
            }
        }
        return unwrapWrapperArguments(params, tools: tools, name: name)
    }
    f.stripContentWhitespaceWithTools = false
    f.structuralScalars = [">"]
    return f
}()

/// `<｜DSML｜parameter name="K"( string="S")?>V</｜DSML｜parameter>` (a value also ends at the next parameter).
func dsmlParameters(_ raw: String, partial: Bool) -> [(name: String, isString: Bool, value: String)] {
    let opener = "<｜DSML｜parameter", closer = "</｜DSML｜parameter>"
    var result: [(name: String, isString: Bool, value: String)] = []
    var rest = Substring(raw)
    while let open = rest.range(of: opener) {
        var h = rest[open.upperBound...]
        // \s+name="([^"]+)"(?:\s+string="([^"]*)")?\s*>
        guard let first = h.unicodeScalars.first, isPythonSpace(first) else { rest = h; continue }
        while let c = h.unicodeScalars.first, isPythonSpace(c) { h = h.dropFirst() }
        guard h.hasPrefix("name=\"") else { rest = h; continue }
        h = h.dropFirst(6)
        guard let q = h.firstIndex(of: "\""), q > h.startIndex else { rest = h; continue }
        let name = String(h[..<q])
        h = h[h.index(after: q)...]
        var stringAttribute: String?
        var probe = h
        while let c = probe.unicodeScalars.first, isPythonSpace(c) { probe = probe.dropFirst() }
        if probe.count < h.count, probe.hasPrefix("string=\""), let q2 = probe.dropFirst(8).firstIndex(of: "\"") {
            stringAttribute = String(probe.dropFirst(8)[..<q2])
            h = probe[probe.index(after: q2)...]
        }
        while let c = h.unicodeScalars.first, isPythonSpace(c) { h = h.dropFirst() }
        guard h.hasPrefix(">") else { rest = h; continue }
        let body = h.dropFirst()
        let isString = stringAttribute == "true"
        let end = body.range(of: closer)
        let next = body.range(of: opener)
        if let end, next.map({ end.lowerBound <= $0.lowerBound }) ?? true {
            result.append((name, isString, String(body[..<end.lowerBound])))
            rest = body[end.upperBound...]
        } else if let next {
            result.append((name, isString, String(body[..<next.lowerBound])))
            rest = body[next.lowerBound...]
        } else {
            if partial { result.append((name, isString, String(body))) }
            break
        }
    }
    return result
}

/// `{"arguments": {...}}` or `{"input": …}` around the real arguments, when the schema has
/// no such key (vLLM's _unwrap_wrapper_args).
private func unwrapWrapperArguments(_ params: TemplateObject, tools: [ToolDefinition], name: String?) -> String {
    let text = json(params)
    guard let name, let tool = tools.first(where: { $0.name == name }), tool.properties.count > 0 else { return text }
    let allowed = Set(tool.properties.keys)
    for wrapper in ["arguments", "input"] where params.keys == [wrapper] && !allowed.contains(wrapper) {
        var inner = params[wrapper]!
        if case .string(let s) = inner {
            guard let parsed = try? JSONText.parse(Data(s.utf8)) else { return text }
            inner = parsed
        }
        if case .object(let o) = inner, Set(o.keys).isSubset(of: allowed) { return json(o) }
    }
    return text
}

/// Kimi-K2: `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{json}<|tool_call_end|>…`.
private let kimiTools: ToolCallFormat = {
    var f = ToolCallFormat(grammar: grammar("kimi_k2", [
        ("TOOL_SECTION_START", "<|tool_calls_section_begin|>"), ("TOOL_SECTION_END", "<|tool_calls_section_end|>"),
        ("TOOL_START", "<|tool_call_begin|>"), ("TOOL_END", "<|tool_call_end|>"), ("ARG_START", "<|tool_call_argument_begin|>"),
    ], json: true, [
        t(.content, "TOOL_SECTION_START", .toolPreamble),
        t(.toolPreamble, "TOOL_START", .toolName, [.toolCallStart]),
        t(.toolName, "ARG_START", .toolArguments),
        t(.toolArguments, "TOOL_END", .toolBetween, [.toolCallEnd]),
        t(.toolArguments, "TOOL_SECTION_END", .toolPreamble, [.toolCallEnd]),
        t(.toolBetween, "TOOL_START", .toolName, [.toolCallStart]),
        // After the section closes the parser stays in a tool state: trailing text is dropped.
        t(.toolPreamble, "TOOL_SECTION_END", .toolPreamble),
        t(.toolBetween, "TOOL_SECTION_END", .toolPreamble),
    ]))
    f.nameAndID = { header in
        // (?P<id>.+:\d+) at the start of the stripped header
        let h = Array(pythonStrip(header).unicodeScalars)
        var end = -1
        var i = h.count - 1
        while i > 0 {
            if h[i] == ":" && i + 1 < h.count && ("0"..."9").contains(h[i + 1]) {
                var j = i + 1
                while j < h.count, ("0"..."9").contains(h[j]) { j += 1 }
                end = j
                break
            }
            i -= 1
        }
        guard end > 0 else { return nil }
        let id = pythonStrip(String(String.UnicodeScalarView(h[..<end])))
        var name = String(id.split(separator: ":", omittingEmptySubsequences: false)[0])
        if name.hasPrefix("functions.") { name.removeFirst("functions.".count) }
        return (id, name)
    }
    f.streamFirstArgumentChunk = true
    f.argumentsVerbatim = true
    f.stripContentWhitespaceWithTools = false
    return f
}()

/// MiniMax-M2: `<minimax:tool_call><invoke name="N"><parameter name="K">V</parameter></invoke></minimax:tool_call>`.
private let minimaxTools: ToolCallFormat = {
    var transitions = [
        t(.content, "TOOL_START", .toolPreamble),
        t(.toolArguments, "PARAM_START", .toolArguments, [.arguments]),
        t(.toolArguments, "PARAM_END", .toolArguments, [.arguments]),
        t(.toolPreamble, "TOOL_END", .content),
        t(.toolBetween, "TOOL_END", .content),
        t(.content, "TOOL_END", .content),
        t(.toolArguments, "INVOKE_END", .toolBetween, [.toolCallEnd]),
    ]
    for state in [ParserState.content, .toolPreamble, .toolBetween] {
        for marker in ["INVOKE_PREFIX_DQ", "INVOKE_PREFIX_SQ", "INVOKE_PREFIX_UNQUOTED"] {
            transitions.append(t(state, marker, .toolName, [.toolCallStart]))
        }
    }
    for marker in ["NAME_END_DQ", "NAME_END_SQ", "NAME_END_UNQUOTED"] { transitions.append(t(.toolName, marker, .toolArguments)) }
    var f = ToolCallFormat(grammar: grammar("minimax_m2", [
        ("TOOL_START", "<minimax:tool_call>"), ("PARAM_START", "<parameter name="), ("PARAM_END", "</parameter>"),
        ("TOOL_END", "</minimax:tool_call>"), ("INVOKE_PREFIX_DQ", "<invoke name=\""), ("INVOKE_PREFIX_SQ", "<invoke name='"),
        ("INVOKE_PREFIX_UNQUOTED", "<invoke name="), ("INVOKE_END", "</invoke>"), ("NAME_END_DQ", "\">"), ("NAME_END_SQ", "'>"),
        ("NAME_END_UNQUOTED", ">"),
    ], json: false, transitions))
    f.convertArguments = { raw, partial, _, _ in
        var params = TemplateObject()
        for p in xmlParameters(raw, opener: "<parameter name=", closer: "</parameter>", partial: partial, name: minimaxParameterName) {
            params[p.name] = .string(p.value)
        }
        return json(params)
    }
    f.validateToolNames = true
    return f
}()

/// `"K"`, `'K'` or `K` after `<parameter name=`.
private func minimaxParameterName(_ header: String) -> String? {
    let h = pythonStrip(header)
    if h.count >= 2, let q = h.first, q == "\"" || q == "'", h.last == q { return pythonStrip(String(h.dropFirst().dropLast())) }
    return h.isEmpty ? nil : h
}

extension OutputFormat {
    /// The format `--tool-call-parser` and `--reasoning-parser` select: a parser name, `auto`
    /// (from the chat template) or `none`.
    public static func selected(toolCallParser: String = "auto", reasoningParser: String = "auto", chatTemplate: String?) throws -> OutputFormat {
        let automatic = defaultParsers(chatTemplate: chatTemplate)
        func choose(_ flag: String, _ auto: String?) -> String? { flag == "auto" ? auto : flag == "none" ? nil : flag }
        return try named(toolCallParser: choose(toolCallParser, automatic.toolCall), reasoningParser: choose(reasoningParser, automatic.reasoning))
    }

    public static func automatic(chatTemplate: String?) throws -> OutputFormat {
        try selected(chatTemplate: chatTemplate)
    }
}
