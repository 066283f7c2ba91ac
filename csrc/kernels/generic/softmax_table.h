// Part of the ISA-generic softmax family (softmax_family.h): fill_set, one dtype's
// KernelSet from the entries of the headers before it (row_entries.h, row_batches.h,
// panel_tiles.h, gather.h). The last header of the family.

template <class T, class Set>
void fill_set(Set& k) {
  k.softmax_row = softmax_row<T>;
  k.log_softmax_row = log_softmax_row<T>;
  k.reduce = reduce_entry<T>;
  k.reduce_max = reduce_max<T>;
  k.softmax_finish = softmax_finish<T>;
  k.log_softmax_finish = log_softmax_finish<T>;
  k.softmax_finish_stream = softmax_finish_stream<T>;
  k.log_softmax_finish_stream = log_softmax_finish_stream<T>;
  if constexpr (HasExpNf<T>::value) k.softmax_finish_min = softmax_finish_min<T>;
  k.softmax_rows = softmax_rows<T>;
  k.log_softmax_rows = log_softmax_rows<T>;
  k.reduce_rows = reduce_rows<T>;
  if constexpr (kCanStreamRows<T>) {
    k.softmax_rows_stream = softmax_rows_stream<T>;
    k.log_softmax_rows_stream = log_softmax_rows_stream<T>;
    k.stream_rows_below_bytes = StreamRowsBelow<T>::value;
  }
  k.softmax_panel = softmax_panel<T>;
  k.log_softmax_panel = log_softmax_panel<T>;
  k.logsumexp_panel = logsumexp_panel<T>;
  k.gather_row = gather_row<T>;
  if constexpr (!std::is_same_v<typename T::S, typename T::C>) k.narrow_row = narrow_row<T>;
  if constexpr (std::is_same_v<typename T::S, double>) k.weighted_exp_sum = weighted_exp_sum<T>;
}
