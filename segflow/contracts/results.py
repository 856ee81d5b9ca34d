"""Validation results as files (counts only, no row values) and Great Expectations Data Docs built
from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from segflow.contracts.check import SourcesCheck
from segflow.contracts.gx import GX_LOCK, gx_runtime
from segflow.files import write_atomically

OUTCOME_FIELDS = ("rule", "column", "severity", "success", "unexpected_count", "row_count", "message")
# What an expectation's result may keep in a written file: counts and shares only. Anything else
# (partial_unexpected_list, details such as value_counts, a column's min, max or distinct values
# as observed_value) can be a row's value; a table expectation's observed_value is a row count.
COUNT_RESULT_KEYS = frozenset(
    {
        "element_count",
        "missing_count",
        "missing_percent",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
    }
)
DATA_DOCS_SITE = "segflow_local_site"
DATA_DOCS_RUN_NAME = "segflow data contract check"


def write_validation_results(check: SourcesCheck, folder: Path) -> list[Path]:
    """Write validation_<source>.json per checked source: the GX validation result and segflow's
    outcomes, counts only (no row values). Each file is replaced atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for source, report in check.reports.items():
        passed, quarantined = report.rows_passed, report.rows_quarantined
        document = {
            "source": source,
            "contract": report.contract_path,
            "contract_version": report.contract_version,
            "rows": {"checked": passed + quarantined, "passed": passed, "quarantined": quarantined},
            "outcomes": [{name: getattr(o, name) for name in OUTCOME_FIELDS} for o in report.outcomes],
            "validation_result": _without_row_values(report.validation_result),
        }
        path = folder / f"validation_{re.sub(r'[^A-Za-z0-9_.-]+', '-', source)}.json"
        write_atomically(path, json.dumps(document, indent=2, ensure_ascii=False))
        written.append(path)
    return written


def build_data_docs(result_files: list[Path], folder: Path) -> Path:
    """Render files of write_validation_results as a GX Data Docs site in folder; returns index.html.
    The pages fetch CSS and JavaScript from public CDNs (jsdelivr, cdnjs, unpkg, code.jquery.com,
    bootstrapcdn) and GX's logo from S3: offline, pages are unstyled and the index lists nothing."""
    folder = Path(folder).resolve()
    gx = gx_runtime()[0]
    from great_expectations.core.expectation_validation_result import (
        expectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    documents = {Path(path): _validation_document(Path(path)) for path in result_files}
    with GX_LOCK:
        # A context of its own: the site and the stored results must not leak into the one that
        # validates, nor into the next build.
        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                analytics_enabled=False,
            ),
        )
        context.add_data_docs_site(
            DATA_DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        keys = {}
        for path, document in documents.items():
            result = expectationSuiteValidationResultSchema.load(document["validation_result"])
            # The suite page: the expectations that ran, as recorded in the result.
            context.suites.add_or_update(
                gx.ExpectationSuite(
                    name=result.suite_name,
                    expectations=[r.expectation_config.to_domain_obj() for r in result.results],
                )
            )
            run_time = (result.meta.get("batch_markers") or {}).get("ge_load_time")
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
                run_id=RunIdentifier(run_name=DATA_DOCS_RUN_NAME, run_time=run_time),
                batch_identifier=document["source"],
            )
            # What the page shows as run and data asset (GX reads them from the result's meta).
            result.meta.update(run_id=key.run_id, batch_kwargs={"data_asset_name": document["source"]})
            context.validation_results_store.set(key, result)
            keys[path] = key
        index_url = context.build_data_docs(site_names=[DATA_DOCS_SITE])[DATA_DOCS_SITE]
        # GX logs a page it fails to render and goes on; a missing page is an error here.
        missing = [
            str(path)
            for path, key in keys.items()
            if not context.get_docs_sites_urls(resource_identifier=key, site_name=DATA_DOCS_SITE)
        ]
    if missing:
        raise RuntimeError(
            f"Great Expectations rendered no Data Docs page in {folder} for {', '.join(missing)}; "
            "see the great_expectations log for the rendering error"
        )
    index = folder / "index.html"
    if not index.is_file():
        raise RuntimeError(
            f"Great Expectations built no Data Docs index in {folder}; it reported {index_url}"
        )
    return index


def _without_row_values(validation_result: dict) -> dict:
    """A copy of a GX validation result whose expectation results keep counts and shares only."""
    cleaned = json.loads(json.dumps(validation_result))
    for expectation_result in cleaned.get("results", []):
        found = expectation_result.get("result") or {}
        kept = {key: value for key, value in found.items() if key in COUNT_RESULT_KEYS}
        if expectation_result["expectation_config"]["type"].startswith("expect_table_") and (
            "observed_value" in found
        ):
            kept["observed_value"] = found["observed_value"]
        expectation_result["result"] = kept
    return cleaned


def _validation_document(path: Path) -> dict:
    """A file written by write_validation_results, read back."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"validation result file {path} cannot be read as JSON: {exc}") from exc
    if not isinstance(document, dict) or not {"source", "validation_result"} <= document.keys():
        raise ValueError(
            f"validation result file {path} was not written by write_validation_results: "
            "it lacks 'source' or 'validation_result'"
        )
    return document
