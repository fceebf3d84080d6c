import ArgumentParser
import Foundation
import Yams

/// `--config FILE`, `JINDOU_<FLAG>` environment variables and `--print-config` for a
/// command's flags, without a second list of them: the flags are read from
/// ArgumentParser's own description of the command (`_dumpHelp`), so every flag a
/// subcommand has can be set from a file or the environment, and a new flag needs nothing.
///
/// Precedence: the command line, then the environment, then the file, then the flag's
/// default. A file is a YAML mapping from long flag names (without `--`; `_` may stand for
/// `-`) to values: a scalar for an option, a list for a repeatable option, `true`/`false`
/// for a flag. Unknown keys and values of the wrong shape are errors naming the file and the
/// key. The environment variable of flag `max-model-len` is `JINDOU_MAX_MODEL_LEN`; a
/// repeatable option's variable takes a comma-separated list; `JINDOU_CONFIG` names the
/// file when `--config` is not given.
public struct FlagConfiguration: Sendable {
    /// One flag or option of a command, as ArgumentParser describes it.
    public struct Argument: Sendable, Equatable {
        public enum Kind: String, Sendable { case option, flag }
        public var kind: Kind
        /// Long names, the preferred one first (a flag with an inversion has both).
        public var names: [String]
        public var shortNames: [Character]
        public var isRepeating: Bool
        public var defaultValue: String?
        public var abstract: String
        /// The key in files and the base of the environment variable's name.
        public var key: String { names[0] }
        public var environmentName: String { FlagConfiguration.environmentName(key) }
    }

    /// Where an effective value came from.
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        case commandLine, environment(String), file(String), unset
        public var description: String {
            switch self {
            case .commandLine: "command line"
            case .environment(let name): name
            case .file(let path): path
            case .unset: "default"
            }
        }
    }

    public struct Value: Sendable, Equatable {
        public var argument: Argument
        /// Option values (one unless repeating); for a flag, "true" or "false".
        public var values: [String]
        public var source: Source
    }

    /// The subcommand's name (`worker`) and the path to it (`jindoud worker`).
    public var commandName: String
    public var commandPath: String
    public var arguments: [Argument]

    /// Keys that are not flags of the command: the file's own, help, version.
    static let reserved: Set<String> = ["config", "print-config", "help", "version", "experimental-dump-help", "generate-completion-script"]

    public static func environmentName(_ key: String) -> String {
        "JINDOU_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// The flags of `subcommand` of `root` (nil: root itself).
    public init(root: ParsableCommand.Type, subcommand: String?) throws {
        let dump = try JSONDecoder().decode(Dump.self, from: Data(root._dumpHelp().utf8))
        var command = dump.command
        var path = command.commandName
        if let subcommand {
            guard let found = command.subcommands?.first(where: { $0.commandName == subcommand }) else {
                throw ConfigError("\(path) has no subcommand '\(subcommand)'")
            }
            command = found
            path += " " + subcommand
        }
        commandName = command.commandName
        commandPath = path
        arguments = (command.arguments ?? []).compactMap { argument in
            guard let kind = Argument.Kind(rawValue: argument.kind) else { return nil }
            let longs = (argument.names ?? []).filter { $0.kind == "long" || $0.kind == "longWithSingleDash" }.map(\.name)
            guard !longs.isEmpty, !Self.reserved.contains(longs[0]) else { return nil }
            // The preferred (positive) name first: `--foo/--no-foo` is keyed `foo`.
            let preferred = argument.preferredName.flatMap { $0.kind == "long" ? $0.name : nil } ?? longs[0]
            let ordered = [preferred] + longs.filter { $0 != preferred }
            let shorts = (argument.names ?? []).filter { $0.kind == "short" }.compactMap(\.name.first)
            return Argument(kind: kind, names: ordered, shortNames: shorts, isRepeating: argument.isRepeating ?? false,
                            defaultValue: argument.defaultValue, abstract: argument.abstract ?? "")
        }
    }

    func argument(named name: String) -> Argument? {
        let normalised = name.replacingOccurrences(of: "_", with: "-")
        return arguments.first { $0.names.contains(normalised) }
    }

    /// The flags `commandLine` (the subcommand's arguments, after its name) sets.
    func keysOnCommandLine(_ commandLine: [String]) -> Set<String> {
        var keys = Set<String>()
        for token in commandLine {
            if token == "--" { break }
            if token.hasPrefix("--") {
                let name = String(token.dropFirst(2).prefix { $0 != "=" })
                if let argument = argument(named: name) { keys.insert(argument.key) }
            } else if token.hasPrefix("-"), token.count >= 2 {
                for character in token.dropFirst() {
                    if let argument = arguments.first(where: { $0.shortNames.contains(character) }) { keys.insert(argument.key) }
                }
            }
        }
        return keys
    }

    /// Every flag's effective value given the command line, environment and file.
    public func resolve(commandLine: [String], environment: [String: String], file: String?) throws -> [Value] {
        let onCommandLine = keysOnCommandLine(commandLine)
        let fromFile = try file.map { try Self.values(ofFile: $0, for: self) } ?? [:]
        var resolved: [Value] = []
        for argument in arguments {
            if onCommandLine.contains(argument.key) {
                resolved.append(Value(argument: argument, values: [], source: .commandLine))
            } else if let text = environment[argument.environmentName] {
                resolved.append(Value(argument: argument, values: try Self.values(ofEnvironment: text, for: argument),
                                      source: .environment(argument.environmentName)))
            } else if let values = fromFile[argument.key], let file {
                resolved.append(Value(argument: argument, values: values, source: .file(file)))
            } else {
                resolved.append(Value(argument: argument, values: [], source: .unset))
            }
        }
        return resolved
    }

    /// The arguments to parse: the environment's and the file's flags, then the command line
    /// (which overrides them: their keys are left out when it gives them).
    public static func tokens(_ values: [Value]) -> [String] {
        var tokens: [String] = []
        for value in values {
            switch value.source {
            case .commandLine, .unset: continue
            case .environment, .file: break
            }
            let argument = value.argument
            switch argument.kind {
            case .flag:
                if value.values == ["true"] {
                    tokens.append("--" + argument.key)
                } else if let inverted = argument.names.first(where: { $0 == "no-" + argument.key }) {
                    tokens.append("--" + inverted)
                }
            case .option:
                for item in value.values { tokens += ["--" + argument.key, item] }
            }
        }
        return tokens
    }

    /// A file's keys and values, each checked against the flag it sets.
    static func values(ofFile path: String, for configuration: FlagConfiguration) throws -> [String: [String]] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError("cannot read config file \(path): \(error.localizedDescription)")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError("config file \(path) is not valid YAML: \(error)")
        }
        guard let root else { return [:] }  // an empty file sets nothing
        guard let mapping = root.mapping else {
            throw ConfigError("config file \(path) must be a mapping of flag names to values, e.g. `model: /models/x`")
        }
        var result: [String: [String]] = [:]
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.string else { throw ConfigError("config file \(path): keys must be flag names") }
            if key == "config" { throw ConfigError("config file \(path): `config` cannot be set in a config file") }
            guard let argument = configuration.argument(named: key) else {
                throw ConfigError("config file \(path): unknown key '\(key)' for `\(configuration.commandPath)` (see `\(configuration.commandPath) --help`)")
            }
            guard result[argument.key] == nil else {
                throw ConfigError("config file \(path): '\(key)' is given twice")
            }
            let negated = key.replacingOccurrences(of: "_", with: "-") != argument.key  // `no-foo` for flag `foo`
            let context = "config file \(path): '\(key)'"
            if valueNode.null != nil { continue }  // `key:` or `key: null` leaves the default
            switch argument.kind {
            case .flag:
                guard let bool = valueNode.bool else { throw ConfigError("\(context) is a flag: give true or false") }
                result[argument.key] = [String(bool != negated)]
            case .option:
                if let sequence = valueNode.sequence {
                    guard argument.isRepeating else { throw ConfigError("\(context) takes one value (a comma-separated string where the flag takes several), not a YAML list") }
                    result[argument.key] = try sequence.map {
                        guard let item = $0.scalar?.string else { throw ConfigError("\(context): list items must be plain values") }
                        return item
                    }
                } else if let scalar = valueNode.scalar {
                    result[argument.key] = [scalar.string]
                } else {
                    throw ConfigError("\(context) must be a value\(argument.isRepeating ? " or a list" : ""), not a mapping")
                }
            }
        }
        return result
    }

    static func values(ofEnvironment text: String, for argument: Argument) throws -> [String] {
        switch argument.kind {
        case .flag:
            switch text.lowercased() {
            case "1", "true", "yes", "on": return ["true"]
            case "0", "false", "no", "off", "": return ["false"]
            default: throw ConfigError("\(argument.environmentName)=\(text): a flag takes true or false (1/0, yes/no)")
            }
        case .option:
            if argument.isRepeating { return text.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
            return [text]
        }
    }

    /// The effective configuration as a YAML file `--config` reads back: every flag with its
    /// help as a comment and where its value came from; flags left at no value commented out.
    public static func yaml(_ values: [Value], commandPath: String, commandLine: [String]) -> String {
        var lines = ["# \(commandPath): effective configuration (command line > JINDOU_* environment > config file > default)"]
        for value in values {
            let argument = value.argument
            lines.append("")
            if !argument.abstract.isEmpty { lines.append("# " + argument.abstract.replacingOccurrences(of: "\n", with: " ")) }
            var items = value.values
            if value.source == .commandLine { items = commandLineValues(argument, commandLine) }
            var source = value.source.description
            if value.source == .unset {
                if argument.kind == .flag {
                    items = [argument.defaultValue ?? "false"]
                } else if let defaultValue = argument.defaultValue {
                    items = [defaultValue]
                } else {
                    lines.append("# \(argument.key):")
                    continue
                }
            } else {
                source = "from " + source
            }
            if argument.kind == .option && argument.isRepeating {
                lines.append("\(argument.key):  # \(source)")
                lines += items.map { "  - " + scalar($0) }
            } else {
                lines.append("\(argument.key): \(scalar(items.last ?? ""))  # \(source)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The values the command line gives `argument` (the last one wins for a single option).
    static func commandLineValues(_ argument: Argument, _ commandLine: [String]) -> [String] {
        var values: [String] = []
        var index = 0
        while index < commandLine.count, commandLine[index] != "--" {
            let token = commandLine[index]
            index += 1
            guard token.hasPrefix("--") else { continue }
            let body = token.dropFirst(2)
            let name = String(body.prefix { $0 != "=" })
            guard argument.names.contains(name) else { continue }
            if argument.kind == .flag {
                values = [String(name == argument.key)]
            } else if let equals = body.firstIndex(of: "=") {
                values.append(String(body[body.index(after: equals)...]))
            } else if index < commandLine.count {
                values.append(commandLine[index])
                index += 1
            }
        }
        return values
    }

    /// A value written so YAML reads it back as the same text: numbers and booleans plain,
    /// strings quoted when YAML would read them otherwise.
    static func scalar(_ text: String) -> String {
        if text == "true" || text == "false" || Int(text) != nil || (Double(text) != nil && !text.contains("n") && !text.contains("N")) {
            return text
        }
        if let dumped = try? Yams.dump(object: text) {
            return dumped.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}

/// The JSON `_dumpHelp` writes (ArgumentParser's ToolInfoV0), the parts used here.
private struct Dump: Decodable {
    struct Name: Decodable { var kind: String; var name: String }
    struct ArgumentInfo: Decodable {
        var kind: String
        var names: [Name]?
        var preferredName: Name?
        var isRepeating: Bool?
        var defaultValue: String?
        var abstract: String?
    }
    struct Command: Decodable {
        var commandName: String
        var subcommands: [Command]?
        var arguments: [ArgumentInfo]?
    }
    var command: Command
}

public struct ConfigError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension FlagConfiguration {
    /// The arguments `root.main` should parse for `commandLine` (the process's arguments
    /// without the executable): the subcommand's file and environment flags merged in, or,
    /// with `--print-config`, the effective configuration printed and nil (exit 0).
    /// Errors (an unknown key, a bad value) are printed as ArgumentParser prints its own,
    /// and nil is returned with the exit code ArgumentParser would use.
    public static func arguments(root: ParsableCommand.Type, commandLine: [String],
                                 environment: [String: String] = ProcessInfo.processInfo.environment) -> Result<[String], ExitCode> {
        guard let subcommand = commandLine.first, !subcommand.hasPrefix("-"),
              let configuration = try? FlagConfiguration(root: root, subcommand: subcommand) else {
            return .success(commandLine)
        }
        let rest = Array(commandLine.dropFirst())
        let file = commandLineValues(Argument(kind: .option, names: ["config"], shortNames: [], isRepeating: false,
                                              defaultValue: nil, abstract: ""), rest).last ?? environment["JINDOU_CONFIG"]
        let printing = rest.prefix { $0 != "--" }.contains("--print-config")
        do {
            let values = try configuration.resolve(commandLine: rest, environment: environment, file: file)
            let added = tokens(values)
            let merged = [subcommand] + added + rest
            // Checked here when the file or environment added flags, so an error can say where a
            // value came from; a printed configuration is one the daemon accepts.
            if printing || !added.isEmpty { _ = try root.parseAsRoot(merged) }
            if printing {
                print(yaml(values, commandPath: configuration.commandPath, commandLine: rest), terminator: "")
                return .failure(.success)
            }
            return .success(merged)
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("Error: \(error.description)\n".utf8))
            return .failure(.validationFailure)
        } catch {
            // ArgumentParser names the flag; say where a value it did not take came from.
            var message = root.fullMessage(for: error)
            if let values = try? configuration.resolve(commandLine: rest, environment: environment, file: file) {
                for value in values where value.source != .commandLine && value.source != .unset
                    && value.argument.names.contains(where: { message.contains("'--\($0)") }) {
                    message += "\n(--\(value.argument.key) was set by \(value.source))"
                }
            }
            FileHandle.standardError.write(Data((message + "\n").utf8))
            return .failure(root.exitCode(for: error))
        }
    }

    /// The environment without the variables that would set flags of `subcommand`, for a
    /// child process that gets its flags explicitly (`jindoud local`'s workers).
    public static func environmentWithoutFlags(root: ParsableCommand.Type, subcommand: String, keeping: Set<String> = [],
                                               environment: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        guard let configuration = try? FlagConfiguration(root: root, subcommand: subcommand) else { return environment }
        let names = Set(configuration.arguments.map(\.environmentName)).union(["JINDOU_CONFIG"]).subtracting(keeping)
        return environment.filter { !names.contains($0.key) }
    }
}
