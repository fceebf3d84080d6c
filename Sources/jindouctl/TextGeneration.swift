import Foundation
import JindouAdmin
import JindouModel
import JindouServing
import JindouTemplates
import JindouTokenizer
import Synchronization

/// Prints text as it streams, flushing after every piece.
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// Turns tokens into text pieces on the fly (for the in-process engine's token callback).
final class StreamPrinter: Sendable {
    private let state: Mutex<StreamingDetokenizer>
    private let collected = Mutex("")
    let echo: Bool

    init(tokenizer: Tokenizer, echo: Bool) {
        state = Mutex(StreamingDetokenizer(tokenizer: tokenizer))
        self.echo = echo
    }

    func token(_ id: Int) {
        let piece = state.withLock { $0.append(id) }
        collected.withLock { $0 += piece }
        if echo { emit(piece) }
    }

    func finish() -> String {
        let tail = state.withLock { $0.finish() }
        if echo { emit(tail) }
        return collected.withLock { $0 += tail; return $0 }
    }
}

/// One streamed answer from a coordinator's OpenAI endpoint: prints content deltas as they
/// arrive and returns the whole text, the finish reason and usage.
func streamCompletion(client: AdminClient, path: String, body: [String: Any], echo: Bool) async throws -> (text: String, finish: String, usage: [String: Int]) {
    var request = body
    request["stream"] = true
    request["stream_options"] = ["include_usage": true]
    var text = ""
    var finish = "length"
    var usage: [String: Int] = [:]
    for try await payload in client.events(path, body: try JSONSerialization.data(withJSONObject: request)) {
        guard let object = try? JSONSerialization.jsonObject(with: payload) as? [String: Any] else { continue }
        if let error = object["error"] as? [String: Any] {
            throw CLIError(message: "coordinator: \(error["message"] as? String ?? "error")")
        }
        if let u = object["usage"] as? [String: Int] { usage = u }
        for choice in object["choices"] as? [[String: Any]] ?? [] {
            let piece = (choice["delta"] as? [String: Any])?["content"] as? String ?? choice["text"] as? String ?? ""
            text += piece
            if echo { emit(piece) }
            if let reason = choice["finish_reason"] as? String { finish = reason }
        }
    }
    return (text, finish, usage)
}

/// The tokenizer (and chat template) of a checkpoint directory or GGUF file, or a clear error.
func textSide(of directory: String) throws -> (Tokenizer, ChatTemplate?, [String: String], Set<Int>) {
    if isFile(directory) {
        let text = try ServingText(gguf: directory, description: try GGUFCheckpoint(path: directory).description)
        guard let tokenizer = text.tokenizer else { throw CLIError(message: "\(directory) has no tokenizer (tokenizer.ggml.model); use --prompt-ids") }
        return (tokenizer, text.chatTemplate, text.specialTokens, text.stopTokenIDs)
    }
    let tokenizerPath = (directory as NSString).appendingPathComponent("tokenizer.json")
    guard FileManager.default.fileExists(atPath: tokenizerPath) else {
        throw CLIError(message: "\(directory) has no tokenizer.json; use --prompt-ids")
    }
    let tokenizer = try Tokenizer(contentsOf: tokenizerPath)
    var template: ChatTemplate?
    var specials: [String: String] = [:]
    var stops = Set<Int>()
    if let data = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent("tokenizer_config.json")),
       let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
        if let source = config["chat_template"] as? String { template = try ChatTemplate(source) }
        for key in ["bos_token", "eos_token", "pad_token", "unk_token"] {
            if let s = config[key] as? String { specials[key] = s }
        }
        if let eos = specials["eos_token"], let id = tokenizer.id(of: eos) { stops.insert(id) }
    }
    return (tokenizer, template, specials, stops)
}

/// Whether `path` is an existing file (a GGUF model) rather than a checkpoint directory.
func isFile(_ path: String) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
}
