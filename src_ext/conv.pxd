from cython cimport floating

cpdef int im2col(const floating[:, :, :, ::1] x, int kh, int kw, int stride, int pad,
                  floating[:, ::1] cols) except -1 nogil
cpdef int im2col_t(const floating[:, :, :, ::1] x, int kh, int kw, int stride, int pad,
                   floating[:, ::1] cols_t) except -1 nogil
cpdef int col2im(const floating[:, ::1] cols, int kh, int kw, int stride, int pad,
                  floating[:, :, :, ::1] dx) except -1 nogil
cpdef int rows_to_nchw(const floating[:, ::1] rows, const floating[::1] bias, bint relu,
                        floating[:, :, ::1] y) except -1 nogil
cpdef int nchw_to_rows(const floating[:, :, ::1] dy, const floating[:, :, ::1] y, bint relu,
                        floating[:, ::1] rows) except -1 nogil
