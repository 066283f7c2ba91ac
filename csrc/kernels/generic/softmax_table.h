// Part of the ISA-generic softmax family (softmax_family.h): fill_set, one dtype's
// KernelSet from the entries of the headers before it (row_entries.h, row_batches.h,
// panel_tiles.h, gather.h), and fill_row_entries, its single-row entries alone. The
// last header of the family.
//
// T fills the softmax entries; TLog (T unless given) those of log_softmax and
// logsumexp and reduce (whose Partial a long row's log_softmax takes): bfloat16 gives
// SetApart<T> there (set_apart.h: a rest accurate relative to itself), where
// softmax needs no more than T's sums.

// The single-row entries, all that rows gathered into compute-type buffers take
// (driver.cpp gathered_row, select.cpp): the bfloat16 rows' float32 set fills these.
template <class T, class TLog = T, class Set>
void fill_row_entries(Set& k) {
  k.softmax_row = softmax_row<T>;
  k.log_softmax_row = log_softmax_row<TLog>;
  k.reduce = reduce_entry<TLog>;
  k.reduce_max = reduce_max<TLog>;
  k.softmax_finish = softmax_finish<T>;
  k.log_softmax_finish = log_softmax_finish<TLog>;
}

template <class T, class TLog = T, class Set>
void fill_set(Set& k) {
  fill_row_entries<T, TLog>(k);
  k.softmax_finish_stream = softmax_finish_stream<T>;
  k.log_softmax_finish_stream = log_softmax_finish_stream<TLog>;
  if constexpr (HasExpNf<T>::value) k.softmax_finish_min = softmax_finish_min<T>;
  k.softmax_rows = softmax_rows<T>;
  k.log_softmax_rows = log_softmax_rows<TLog>;
  k.reduce_rows = reduce_rows<TLog>;  // (the bits of reduce, one row at a time)
  if constexpr (kCanStreamRows<T>) {
    k.softmax_rows_stream = softmax_rows_stream<T>;
    k.log_softmax_rows_stream = log_softmax_rows_stream<TLog>;
    k.stream_rows_below_bytes = StreamRowsBelow<T>::value;
  }
  k.softmax_panel = softmax_panel<T>;
  k.log_softmax_panel = log_softmax_panel<TLog>;
  k.logsumexp_panel = logsumexp_panel<TLog>;
  k.gather_row = gather_row<T>;
  if constexpr (!std::is_same_v<typename T::S, typename T::C>) k.narrow_row = narrow_row<T>;
  if constexpr (std::is_same_v<typename T::S, double>) k.weighted_exp_sum = weighted_exp_sum<T>;
}
