"""What each dashboard page shows, computed: one module per page, and never an import of streamlit.

  * home      the dataset: sample pictures per class, mean image per class, class balance
  * train     the Train form (widget values <-> model and training configs, checked before
              launch) and a run's progress with epoch time, elapsed time and ETA
  * results   the run comparison table, confusion matrix (CSV, a PNG drawn with Pillow, the
              test images behind one cell), per-class report, test-set predictions
  * predict   one input through PyTorch (fmnist_core.predict) and the NumPy twin, side by side
  * inside    one trained network opened up: every layer's output in both implementations
              and their difference, first-layer weights and feature maps as pictures
  * timings   the Timings page's tables, charts and sentences from benchmark results
  * leaderboard  the class's finished runs ranked, and settings against accuracy
  * labels    how a run is named everywhere: owner, model, what differs from its preset
  * shared    what several pages show: the shipped models and the list of models to choose
              from, model and run names, the job queue, layer tables, crisp upscaled pictures
  * format    the one place that writes times for people (durations, clock times)

A page collects widget values and lays out what these functions return: pandas frames,
NumPy images, PNG/CSV bytes, plain dicts. So the numbers on screen are testable without a
browser, and the dashboard, the CLI and the tests stay three clients of one core.

Not here: anything that trains or times (fmnist_core.train, .bench), layout, widgets and chart
styling (pages/ and ui/), and caching (ui.common keeps what these return in st.cache_*).
"""
