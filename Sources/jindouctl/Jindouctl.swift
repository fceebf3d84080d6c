import ArgumentParser

/// `jindouctl`: the admin and user CLI for Jindou.
@main
struct Jindouctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jindouctl",
        abstract: "Drive Jindou: generate with a model or a cluster, make synthetic models, benchmark.",
        discussion: """
            Runs the single-process engine in-process with --model DIR.
            Errors go to stderr with a non-zero exit status; --json prints one JSON object.
            """,
        subcommands: [Generate.self, Synth.self, Bench.self]
    )
}
