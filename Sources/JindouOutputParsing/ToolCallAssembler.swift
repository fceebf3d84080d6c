import Foundation
import JindouTemplates

// Turns the engine's events into OpenAI's message fields: the complete message of a
// non-streaming answer and the deltas of a streaming one. Mirrors the event handling of
// vLLM 0.33.0's ParserEngine (vllm/parser/engine/parser_engine.py: _events_to_delta,
// _handle_arg_chunk, _handle_tool_end, _compute_arg_delta, _build_extracted_result).

/// A function the request offers: its name and its parameters' JSON schema properties.
public struct ToolDefinition: Sendable {
    public var name: String
    public var properties: TemplateObject
    public init(name: String, properties: TemplateObject = TemplateObject()) {
        self.name = name
        self.properties = properties
    }

    /// The request's `tools` (`[{"type": "function", "function": {"name", "parameters"}}]`).
    public static func list(fromRequestTools tools: TemplateValue?) -> [ToolDefinition] {
        guard case .array(let items)? = tools else { return [] }
        return items.compactMap { item in
            guard case .object(let tool) = item, case .object(let function)? = tool["function"],
                  case .string(let name)? = function["name"] else { return nil }
            var properties = TemplateObject()
            if case .object(let parameters)? = function["parameters"], case .object(let p)? = parameters["properties"] {
                properties = p
            }
            return ToolDefinition(name: name, properties: properties)
        }
    }
}

/// One parsed call: `arguments` is JSON text.
public struct ParsedToolCall: Equatable, Sendable {
    public var id: String
    public var name: String
    public var arguments: String
    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// A whole assistant message as the parsers split it.
public struct AssistantOutput: Equatable, Sendable {
    public var reasoning: String?
    public var content: String?
    public var toolCalls: [ParsedToolCall]
    public init(reasoning: String? = nil, content: String? = nil, toolCalls: [ParsedToolCall] = []) {
        self.reasoning = reasoning
        self.content = content
        self.toolCalls = toolCalls
    }
}

/// One streamed piece of a tool call: the first carries `id` and `name`.
public struct ToolCallDelta: Equatable, Sendable {
    public var index: Int
    public var id: String?
    public var name: String?
    public var arguments: String?
    public init(index: Int, id: String? = nil, name: String? = nil, arguments: String? = nil) {
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// One streamed piece of an assistant message.
public struct AssistantDelta: Equatable, Sendable {
    public var reasoning: String?
    public var content: String?
    public var toolCalls: [ToolCallDelta] = []
    public var isEmpty: Bool { reasoning == nil && content == nil && toolCalls.isEmpty }
    public init(reasoning: String? = nil, content: String? = nil, toolCalls: [ToolCallDelta] = []) {
        self.reasoning = reasoning
        self.content = content
        self.toolCalls = toolCalls
    }
}

/// The tool-call side of a family's format.
public struct ToolCallFormat: Sendable {
    public var grammar: ParserGrammar
    /// Raw argument text (partial or complete) to JSON text; nil when the arguments are JSON.
    public var convertArguments: (@Sendable (_ raw: String, _ partial: Bool, _ tools: [ToolDefinition], _ name: String?) -> String?)?
    /// The name as the format writes it → the call's id and function name (Kimi's
    /// `functions.NAME:IDX`); nil keeps the written name.
    public var nameAndID: (@Sendable (String) -> (id: String, name: String)?)?
    public var trimName = false
    public var stripContentWhitespaceWithTools = true
    public var dropWhitespaceOnlyContentBeforeTools = true
    public var validateToolNames = false
    /// Arguments of a call whose name came from its header stay as written (Kimi).
    public var argumentsVerbatim = false
    /// The first argument chunk that completes the name is also streamed as arguments (Kimi).
    public var streamFirstArgumentChunk = false
    /// A complete message whose call arguments are not JSON has no calls at all, and its
    /// content is only the text before the first call (vLLM's regex-based parsers: hermes,
    /// deepseek_v31).
    public var wholeMessageCalls = false
    /// A complete message's content ends where its first call begins, even a broken one
    /// (vLLM's deepseek_v31 parser).
    public var contentStopsAtCalls = false
    /// Converted arguments stream only when a piece holds one of these (vLLM's
    /// arg_structural_chars); nil converts after every piece.
    public var structuralScalars: Set<Unicode.Scalar>?
    /// The converter's partial output is the model's own JSON text, streamed as it grows
    /// (Hermes' `arguments` value), instead of the converted prefix that later text cannot change.
    public var streamsWrittenArguments = false

    public init(grammar: ParserGrammar) { self.grammar = grammar }
}

/// Assembles one message's tool calls and content from the tool stage's events.
struct ToolCallAssembler {
    private struct Slot {
        var name = ""
        var arguments = ""
        var id = ""
        var nameSent = false
        var streamedJSON = ""
        var stringKeys: Set<String>?
    }

    let format: ToolCallFormat
    let tools: [ToolDefinition]
    private var slots: [Slot] = []
    private var deferredContent = ""
    private var contentHasNonWhitespace = false
    private var nextCallNumber = 0
    private var contentBeforeCalls = ""
    private let makeID: @Sendable (Int) -> String

    init(format: ToolCallFormat, tools: [ToolDefinition], makeID: @escaping @Sendable (Int) -> String) {
        self.format = format
        self.tools = tools
        self.makeID = makeID
    }

    // MARK: Streaming

    /// The content and tool-call deltas of one batch of events.
    mutating func delta(_ events: [ParserEvent], finished: Bool) -> (content: String?, calls: [ToolCallDelta]) {
        if events.isEmpty && deferredContent.isEmpty { return (nil, []) }
        var calls: [ToolCallDelta] = []
        var contentParts: [String] = []
        let carried = deferredContent
        var sawToolEvent = false
        for event in events {
            switch event {
            case .text(let text):
                if slots.isEmpty && !sawToolEvent { contentBeforeCalls += text }
                if sawToolEvent { deferredContent += text } else { contentParts.append(text) }
            case .reasoning, .reasoningEnd:
                break
            case .toolCallStart(let index):
                sawToolEvent = true
                ensureSlot(index)
            case .toolName(let index, let text):
                sawToolEvent = true
                ensureSlot(index)
                slots[index].name += text
            case .arguments(let index, let text):
                sawToolEvent = true
                ensureSlot(index)
                handleArguments(index, text, into: &calls)
            case .toolCallEnd(let index):
                sawToolEvent = true
                handleEnd(index, into: &calls)
            }
        }
        if calls.count > 1 { calls = coalesce(calls) }
        if !deferredContent.isEmpty && (!sawToolEvent || calls.isEmpty) {
            let now = String(deferredContent.dropFirst(carried.count))
            if !carried.isEmpty { contentParts.insert(carried, at: 0) }
            if !now.isEmpty { contentParts.append(now) }
            deferredContent = ""
        }
        var content = contentParts.joined()
        if !contentHasNonWhitespace && !content.isEmpty {
            if !pythonStrip(content).isEmpty {
                contentHasNonWhitespace = true
            } else if !slots.isEmpty {
                if format.dropWhitespaceOnlyContentBeforeTools { content = "" }
            } else if !finished {
                deferredContent = content
                content = ""
            }
        }
        return (content.isEmpty ? nil : content, calls)
    }

    private mutating func ensureSlot(_ index: Int) {
        while slots.count <= index { slots.append(Slot()) }
    }

    private mutating func ensureID(_ index: Int) {
        if slots[index].id.isEmpty {
            slots[index].id = makeID(nextCallNumber)
            nextCallNumber += 1
        }
    }

    private func accepts(_ name: String) -> Bool {
        guard !name.isEmpty else { return false }
        if format.validateToolNames && !tools.isEmpty { return tools.contains { $0.name == name } }
        return true
    }

    private func properties(of name: String) -> TemplateObject {
        tools.first { $0.name == name }?.properties ?? TemplateObject()
    }

    /// Names the slot from what the format wrote (applying Kimi's header rule); false when
    /// no acceptable name is known yet.
    private mutating func resolveName(_ index: Int, _ written: String?) -> String? {
        guard var name = written else { return nil }
        if format.trimName { name = pythonStrip(name) }
        if let nameAndID = format.nameAndID {
            guard let parsed = nameAndID(name) else {
                slots[index].name = ""
                return nil
            }
            slots[index].id = parsed.id
            name = parsed.name
        }
        return accepts(name) ? name : nil
    }

    private mutating func sendName(_ index: Int, _ name: String, arguments: String?, into calls: inout [ToolCallDelta]) {
        slots[index].name = name
        slots[index].nameSent = true
        slots[index].stringKeys = streamableStringKeys(properties(of: name))
        ensureID(index)
        calls.append(ToolCallDelta(index: index, id: slots[index].id, name: name, arguments: arguments))
    }

    private mutating func handleArguments(_ index: Int, _ text: String, into calls: inout [ToolCallDelta]) {
        slots[index].arguments += text
        if !slots[index].nameSent {
            let written = !slots[index].name.isEmpty ? slots[index].name : (text.isEmpty ? nil : nameInArguments(index))
            if let name = resolveName(index, written) {
                sendName(index, name, arguments: nil, into: &calls)
                if format.streamFirstArgumentChunk && !text.isEmpty {
                    calls.append(ToolCallDelta(index: index, arguments: text))
                } else if format.convertArguments != nil, !text.isEmpty, let delta = argumentDelta(index, text) {
                    // The piece that named the call may already hold arguments.
                    calls.append(ToolCallDelta(index: index, arguments: delta))
                }
            }
        } else if !text.isEmpty, let delta = argumentDelta(index, text) {
            calls.append(ToolCallDelta(index: index, arguments: delta))
        }
    }

    private mutating func handleEnd(_ index: Int, into calls: inout [ToolCallDelta]) {
        guard index < slots.count else { return }
        if format.trimName { slots[index].name = pythonStrip(slots[index].name) }
        if !slots[index].nameSent, let nameAndID = format.nameAndID, let parsed = nameAndID(slots[index].name) {
            slots[index].id = parsed.id
            slots[index].name = parsed.name
        }
        var remaining = flushConverter(index)
        if !slots[index].nameSent {
            let name = !slots[index].name.isEmpty ? slots[index].name : (nameInArguments(index) ?? "")
            if accepts(name) {
                sendName(index, name, arguments: remaining ?? "", into: &calls)
                remaining = nil
            }
        }
        if let remaining, !remaining.isEmpty, slots[index].nameSent {
            calls.append(ToolCallDelta(index: index, arguments: remaining))
        }
    }

    private func coalesce(_ calls: [ToolCallDelta]) -> [ToolCallDelta] {
        var order: [Int] = []
        var merged: [Int: ToolCallDelta] = [:]
        for call in calls {
            guard var existing = merged[call.index] else {
                merged[call.index] = call
                order.append(call.index)
                continue
            }
            if existing.id == nil { existing.id = call.id }
            if existing.name == nil { existing.name = call.name }
            if let a = call.arguments { existing.arguments = (existing.arguments ?? "") + a }
            merged[call.index] = existing
        }
        return order.count == calls.count ? calls : order.map { merged[$0]! }
    }

    // MARK: Arguments

    private func nameInArguments(_ index: Int) -> String? {
        // "name"\s*:\s*"([^"]*)"
        let scalars = Array(slots[index].arguments.unicodeScalars)
        let key = Array("\"name\"".unicodeScalars)
        var i = 0
        while i + key.count <= scalars.count {
            if scalars[i..<(i + key.count)].elementsEqual(key) {
                var j = i + key.count
                while j < scalars.count, isPythonSpace(scalars[j]) { j += 1 }
                if j < scalars.count, scalars[j] == ":" {
                    j += 1
                    while j < scalars.count, isPythonSpace(scalars[j]) { j += 1 }
                    if j < scalars.count, scalars[j] == "\"" {
                        var k = j + 1
                        while k < scalars.count, scalars[k] != "\"" { k += 1 }
                        if k < scalars.count {
                            let name = String(String.UnicodeScalarView(scalars[(j + 1)..<k]))
                            return name.isEmpty ? nil : name
                        }
                    }
                }
            }
            i += 1
        }
        return nil
    }

    private mutating func argumentDelta(_ index: Int, _ raw: String) -> String? {
        guard let convert = format.convertArguments else { return raw }
        if let structural = format.structuralScalars, !raw.unicodeScalars.contains(where: structural.contains) { return nil }
        let slot = slots[index]
        guard var current = convert(slot.arguments, true, tools, slot.name.isEmpty ? nil : slot.name), !current.isEmpty else { return nil }
        if format.streamsWrittenArguments {
            guard current.hasPrefix(slot.streamedJSON), current.unicodeScalars.count > slot.streamedJSON.unicodeScalars.count else { return nil }
            let delta = String(current.unicodeScalars.dropFirst(slot.streamedJSON.unicodeScalars.count))
            slots[index].streamedJSON = current
            return delta
        }
        if !slot.name.isEmpty { current = fixArgumentTypes(current, slot.name) }
        let safe = safeArgumentPrefix(current, stringKeys: slot.stringKeys)
        guard !safe.isEmpty else { return nil }
        if !slot.streamedJSON.isEmpty && !safe.hasPrefix(slot.streamedJSON) { return nil }
        let delta = String(safe.unicodeScalars.dropFirst(slot.streamedJSON.unicodeScalars.count))
        slots[index].streamedJSON = safe
        return delta.isEmpty ? nil : delta
    }

    private mutating func flushConverter(_ index: Int) -> String? {
        guard let convert = format.convertArguments else { return nil }
        let slot = slots[index]
        guard var final = convert(slot.arguments, false, tools, slot.name.isEmpty ? nil : slot.name) else { return nil }
        if !final.isEmpty { final = fixArgumentTypes(final, slot.name) }
        let previous = slot.streamedJSON
        guard !final.isEmpty, final.unicodeScalars.count > previous.unicodeScalars.count else { return nil }
        if !previous.isEmpty && !final.hasPrefix(previous) { return nil }
        slots[index].streamedJSON = final
        return String(final.unicodeScalars.dropFirst(previous.unicodeScalars.count))
    }

    /// The schema's types for the XML formats' string values (vLLM's _fix_arg_types).
    func fixArgumentTypes(_ json: String, _ name: String) -> String {
        guard !tools.isEmpty, !name.isEmpty, case .object(var arguments)? = try? JSONText.parse(Data(json.utf8)) else { return json }
        let properties = properties(of: name)
        guard properties.count > 0 else { return json }
        guard SchemaCoercion.coerce(&arguments, properties) else { return json }
        return (try? JSONText.encode(.object(arguments))) ?? json
    }

    // MARK: Complete message

    /// The complete message's calls and content from all of its events.
    mutating func complete(_ events: [ParserEvent]) -> (content: String?, calls: [ParsedToolCall]) {
        let (content, _) = delta(events, finished: true)
        var calls: [ParsedToolCall] = []
        for index in slots.indices {
            let slot = slots[index]
            if slot.name.isEmpty && slot.arguments.isEmpty { continue }
            var name = pythonStrip(slot.name)
            let body = slot.arguments
            var arguments: String
            if name.isEmpty && !pythonStrip(body).isEmpty {
                (name, arguments) = nameAndArguments(body)
            } else if !pythonStrip(body).isEmpty {
                if let convert = format.convertArguments {
                    arguments = convert(body, false, tools, name) ?? argumentsJSON(body)
                } else {
                    arguments = argumentsJSON(body)
                }
            } else {
                arguments = "{}"
            }
            if format.wholeMessageCalls && (try? JSONText.parse(Data(arguments.utf8))) == nil {
                return (format.contentStopsAtCalls ? stripContent(contentBeforeCalls, toolsCalled: true) : content, [])
            }
            if accepts(name) {
                ensureID(index)
                calls.append(ParsedToolCall(id: slots[index].id, name: name, arguments: fixArgumentTypes(arguments, name)))
            }
        }
        if format.wholeMessageCalls && !calls.isEmpty { return (stripContent(contentBeforeCalls, toolsCalled: true), calls) }
        if format.contentStopsAtCalls && !slots.isEmpty { return (stripContent(contentBeforeCalls, toolsCalled: true), calls) }
        return (stripContent(content ?? "", toolsCalled: !calls.isEmpty), calls)
    }

    /// Whether the message's content is what `complete` returned even without calls.
    var replacesContentWithoutCalls: Bool { format.contentStopsAtCalls && !slots.isEmpty }

    func stripContent(_ content: String, toolsCalled: Bool) -> String? {
        var content = content
        if toolsCalled {
            if format.stripContentWhitespaceWithTools {
                content = pythonStrip(content)
            } else if format.dropWhitespaceOnlyContentBeforeTools && pythonStrip(content).isEmpty {
                content = ""
            }
        }
        return content.isEmpty ? nil : content
    }

    private func argumentsJSON(_ raw: String) -> String {
        if format.argumentsVerbatim { return pythonStrip(raw).isEmpty ? "{}" : pythonStrip(raw) }
        if pythonStrip(raw).isEmpty { return "{}" }
        return nameAndArguments(raw).arguments
    }

    /// `{"name": …, "arguments"|"parameters": …}` bodies (vLLM's _extract_name_and_args).
    private func nameAndArguments(_ raw: String) -> (name: String, arguments: String) {
        let body = pythonStrip(raw)
        guard case .object(let parsed)? = try? JSONText.parse(Data(body.utf8)) else { return ("", body) }
        var name = ""
        if case .string(let n)? = parsed["name"] { name = n }
        for key in ["arguments", "parameters"] {
            if let value = parsed[key] {
                if case .string(let s) = value { return (name, s) }
                return (name, (try? JSONText.encode(value)) ?? body)
            }
        }
        var rest = TemplateObject()
        for (k, v) in parsed.pairs where k != "name" { rest[k] = v }
        return (name, (try? JSONText.encode(.object(rest))) ?? body)
    }
}

/// The prefix of converted arguments that later text cannot change: every value but the
/// last, and the last too while it is an open string of a string-typed key (vLLM's
/// _safe_arg_prefix).
func safeArgumentPrefix(_ json: String, stringKeys: Set<String>?) -> String {
    let s = Array(json.unicodeScalars)
    var lastColon = -1
    var lastKey: String?
    var pendingKey: String?
    var inString = false
    var escape = false
    var stringStart = -1
    var depth = 0
    for (i, c) in s.enumerated() {
        if escape { escape = false; continue }
        if inString {
            if c == "\\" { escape = true } else if c == "\"" {
                inString = false
                if depth == 1 && stringStart >= 0 { pendingKey = String(String.UnicodeScalarView(s[(stringStart + 1)..<i])) }
            }
            continue
        }
        if c == "\"" { inString = true; stringStart = i }
        else if c == "{" || c == "[" { depth += 1 }
        else if c == "}" || c == "]" { depth -= 1 }
        else if c == ":" && depth == 1 { lastColon = i; lastKey = pendingKey; pendingKey = nil }
    }
    guard lastColon >= 0 else { return "" }
    var end = lastColon + 1
    while end < s.count, [" ", "\t", "\n", "\r"].contains(s[end]) { end += 1 }
    func prefix(_ n: Int) -> String { String(String.UnicodeScalarView(s[..<n])) }
    if end >= s.count || s[end] != "\"" { return prefix(end) }
    if let stringKeys, !(lastKey.map(stringKeys.contains) ?? false) { return prefix(end) }
    escape = false
    var i = end + 1
    while i < s.count {
        let c = s[i]
        if escape { escape = false } else if c == "\\" { escape = true } else if c == "\"" { return prefix(i) }
        i += 1
    }
    return json
}

/// Keys whose values stay strings under the schema, so an open value may stream; nil when
/// the function has no schema.
func streamableStringKeys(_ properties: TemplateObject) -> Set<String>? {
    guard properties.count > 0 else { return nil }
    var keys = Set<String>()
    for (key, schema) in properties.pairs where Set(SchemaCoercion.types(of: schema)) == ["string"] { keys.insert(key) }
    return keys
}

func isPythonSpace(_ c: Unicode.Scalar) -> Bool {
    switch c.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: true
    default: false
    }
}

/// Python's `str.strip()` (Unicode whitespace).
func pythonStrip(_ s: String) -> String {
    let scalars = Array(s.unicodeScalars)
    var start = 0, end = scalars.count
    while start < end, isPythonSpace(scalars[start]) { start += 1 }
    while end > start, isPythonSpace(scalars[end - 1]) { end -= 1 }
    return String(String.UnicodeScalarView(scalars[start..<end]))
}

/// Python's `str.rstrip()`.
func pythonRStrip(_ s: String) -> String {
    let scalars = Array(s.unicodeScalars)
    var end = scalars.count
    while end > 0, isPythonSpace(scalars[end - 1]) { end -= 1 }
    return String(String.UnicodeScalarView(scalars[..<end]))
}
