//! `gatehouse import istio|ingress-nginx FILE...`: the TOML on stdout, every report on stderr
//! too; exit 0 (all translated), 3 (something reported), 1 (unreadable or nothing to do).

use std::io::Read as _;
use std::process::ExitCode;

use crate::cli::{ImportArgs, ImportCommand};
use crate::import::{self, ImportError, Importer, Input, Options};

pub fn run(cmd: &ImportCommand) -> ExitCode {
    let (importer, args) = match cmd {
        ImportCommand::Istio(a) => (Importer::Istio, a),
        ImportCommand::IngressNginx(a) => (Importer::IngressNginx, a),
    };
    let inputs = match read(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = Options {
        secrets_dir: args.secrets_dir.clone(),
        upstream_template: args.upstream_template.clone(),
    };
    let outcome = match import::import(importer, &inputs, &opts) {
        Ok(o) => o,
        Err(e @ ImportError::Template(..)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    for o in &outcome.ignored {
        eprintln!("ignored: {o}: not a kind this importer translates");
    }
    for r in &outcome.reports {
        eprintln!("not translated: {r}");
    }
    print!("{}", outcome.toml);
    match outcome.reports.is_empty() {
        true => ExitCode::SUCCESS,
        false => {
            eprintln!(
                "{} item(s) not translated: see the list above (also at the top of the output)",
                outcome.reports.len()
            );
            ExitCode::from(3)
        }
    }
}

fn read(args: &ImportArgs) -> Result<Vec<Input>, String> {
    let mut out = Vec::new();
    for f in &args.files {
        let name = f.display().to_string();
        let text = if name == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("standard input: {e}"))?;
            s
        } else {
            std::fs::read_to_string(f).map_err(|e| format!("{name}: {e}"))?
        };
        out.push(Input { name, text });
    }
    Ok(out)
}
