use clap::Parser;

fn main() {
    let cli = dcos_driver::cli::Cli::parse();
    dcos_driver::telemetry::init(cli.log_json, cli.command.default_log_level());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(dcos_driver::cli::run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // `{:#}` prints the whole cause chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
